"""Security headers on every kind of answer, the Content-Security-Policy that allows our
own static files only (so templates carry no inline script or style), HSTS in production
mode and a clean `manage.py check --deploy`."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

BASE = Path(__file__).resolve().parents[2]
PYTHON = sys.executable

EXPECTED_CSP = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "frame-ancestors": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
    "object-src": "'none'",
}


def csp_of(response) -> dict[str, str]:
    policy = response["Content-Security-Policy"]
    return dict(part.strip().split(" ", 1) for part in policy.split(";"))


@pytest.fixture
def answers(world, everything, client_for, api_for, new_client):
    alpha, beta = everything["alpha"], everything["beta"]
    viewer, admin = client_for("viewer"), client_for("admin")
    return {
        "login page": new_client().get("/login/"),
        "page redirect to login": new_client().get("/vms/"),
        "dashboard": admin.get("/"),
        "vm page": admin.get(f"/vms/{alpha['vm']}/"),
        "serial console page": admin.get(f"/vms/{alpha['vm']}/console/serial/"),
        "page 403": viewer.get(f"/vms/{alpha['vm']}/xml/"),
        "page 404": viewer.get(f"/vms/{beta['vm']}/"),
        "page 405": viewer.get(f"/vms/{alpha['vm']}/start/"),
        "api 200": api_for("viewer").get("/api/v1/vms/"),
        "api 401": new_client().get("/api/v1/vms/"),
        "api 403": api_for("viewer").post(f"/api/v1/vms/{alpha['vm']}/force-off/"),
        "api 404": api_for("viewer").get(f"/api/v1/vms/{beta['vm']}/"),
        "static file": new_client().get("/static/panel/live.js"),
        "metrics 401": new_client().get("/metrics"),
    }


def test_it_sends_the_security_headers_with_every_answer(answers):
    missing = {}
    for what, response in answers.items():
        headers = {
            "X-Frame-Options": response.get("X-Frame-Options"),
            "X-Content-Type-Options": response.get("X-Content-Type-Options"),
            "Referrer-Policy": response.get("Referrer-Policy"),
            "CSP": response.has_header("Content-Security-Policy"),
        }
        if headers != {
            "X-Frame-Options": "DENY",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin",
            "CSP": True,
        }:
            missing[what] = (response.status_code, headers)
    assert missing == {}
    assert answers["page 403"].status_code == 403
    assert answers["page 404"].status_code == 404
    assert answers["api 403"].status_code == 403


def test_it_allows_only_our_own_files_and_websockets_in_the_policy(answers):
    policy = csp_of(answers["vm page"])

    assert {k: policy.get(k) for k in EXPECTED_CSP} == EXPECTED_CSP
    # Websockets: to this host (live updates, serial console, uploads) and to websockify.
    connect = policy["connect-src"].split()
    assert connect[:3] == ["'self'", "ws://testserver", "wss://testserver"]
    assert "ws://127.0.0.1:6080" in connect  # PANEL_WEBSOCKIFY_URL's origin
    assert "unsafe" not in answers["dashboard"]["Content-Security-Policy"]


def test_it_admits_only_the_serial_consoles_own_style_nonce(answers, client_for, everything):
    """xterm.js adds <style> elements: the serial console page names a fresh nonce for
    them (its script sets it on each), and no other page names one."""
    first = answers["serial console page"]
    again = client_for("admin").get(f"/vms/{everything['alpha']['vm']}/console/serial/")
    nonces = [
        re.search(r'data-style-nonce="([^"]+)"', r.content.decode()).group(1)
        for r in (first, again)
    ]

    assert csp_of(first)["style-src"] == f"'self' 'nonce-{nonces[0]}'"
    assert csp_of(again)["style-src"] == f"'self' 'nonce-{nonces[1]}'"
    assert nonces[0] != nonces[1] and len(nonces[0]) >= 24
    assert "nonce" not in answers["vm page"]["Content-Security-Policy"]


# What the policy forbids in a template: inline scripts and styles, event handler
# attributes, javascript: URLs. <script src=...> files and JSON data blocks are fine.
INLINE = [
    (
        re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>", re.I),
        "inline <script>",
    ),
    (re.compile(r"<style\b", re.I), "<style> block"),
    (re.compile(r"\sstyle\s*=", re.I), "style attribute"),
    (re.compile(r"\son[a-z]+\s*=", re.I), "event handler attribute"),
    (re.compile(r"javascript:", re.I), "javascript: URL"),
]


def template_files() -> list[Path]:
    dirs = [Path(d) for d in settings.TEMPLATES[0]["DIRS"]]
    dirs += [p for p in BASE.glob("*/templates") if p.is_dir()]
    return sorted(f for d in dirs for f in d.rglob("*.html"))


def test_it_keeps_inline_script_and_style_out_of_every_template():
    files = template_files()
    found = [
        f"{f.relative_to(BASE)}:{text[: m.start()].count(chr(10)) + 1}: {what}"
        for f in files
        for text in [f.read_text()]
        for pattern, what in INLINE
        for m in pattern.finditer(text)
    ]

    assert len(files) > 40
    assert found == []


def test_it_renders_no_inline_script_or_style_in_the_pages(answers):
    for what in ("dashboard", "vm page", "serial console page", "login page"):
        body = answers[what].content.decode()
        for pattern, kind in INLINE:
            assert not pattern.search(body), f"{kind} in the {what}"


def production_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PANEL_") and k not in ("PYTEST_VERSION", "DJANGO_ALLOW_ASYNC_UNSAFE")
    }
    env.update(
        PANEL_PRODUCTION="1",
        PANEL_SECRET_KEY=secrets.token_urlsafe(64),
        PANEL_ALLOWED_HOSTS="panel.example.test",
        PANEL_VAR_DIR=extra.pop("var_dir"),
        DJANGO_SETTINGS_MODULE="panel.settings",
    )
    env.update(extra)
    return env


def test_it_passes_check_deploy_in_production_mode(tmp_path):
    result = subprocess.run(
        [PYTHON, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=BASE,
        env=production_env(var_dir=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


PROBE = """
import json, django
django.setup()
from django.test import Client
c = Client(HTTP_HOST="panel.example.test")
out = {}
for name, kwargs in {"https": {"secure": True}, "http": {}}.items():
    r = c.get("/login/", **kwargs)
    out[name] = {"status": r.status_code, "hsts": r.get("Strict-Transport-Security"),
                 "location": r.get("Location"), "csp": r.has_header("Content-Security-Policy")}
print(json.dumps(out))
"""


def test_it_sends_hsts_on_https_in_production_mode(tmp_path):
    result = subprocess.run(
        [PYTHON, "-c", PROBE],
        cwd=BASE,
        # Static files from static/ as in development: there is no collectstatic run here.
        env=production_env(var_dir=str(tmp_path), PANEL_DEV_STATIC="1"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout.strip().splitlines()[-1])

    assert answers["https"]["status"] == 200
    assert answers["https"]["hsts"] == "max-age=31536000; includeSubDomains; preload"
    assert answers["https"]["csp"] is True
    # Plain HTTP is sent to HTTPS, without HSTS (browsers ignore it there anyway).
    assert answers["http"]["status"] == 301
    assert answers["http"]["location"] == "https://panel.example.test/login/"
    assert answers["http"]["hsts"] is None
