from django import template
from django.conf import settings
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from panel.identity import oidc
from panel.models import Project
from panel.notifications import unread_count
from panel.permissions import VIEW, is_admin, restrict, visible_hosts
from panel.task_panel import recent_tasks

register = template.Library()
# Targets whose page a job links to: the URL name of that page, and the job's result key
# holding the target's name.
TARGET_PAGES = {"vm": ("vm_detail", "vm_name"), "volume": ("volume_detail", "volume_name")}


@register.simple_tag
def oidc_name() -> str:
    """The name of the OpenID provider the login page offers ("" when none is set up)."""
    return settings.PANEL_OIDC_NAME if oidc.configured() else ""


UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


@register.filter
def ibytes(value: object) -> str:
    """Bytes in binary units, as libvirt and qemu count them: 4.6 GiB."""
    try:
        size = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "—"
    for unit in UNITS:
        if abs(size) < 1024 or unit == UNITS[-1]:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} PiB"


@register.filter
def percent(value: object, total: object) -> int:
    """value as a whole percentage of total (0 when total is 0), for progress bars."""
    try:
        part, whole = float(value), float(total)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0
    return max(0, min(100, round(100 * part / whole))) if whole > 0 else 0


@register.filter
def split(value: str, sep: str | None = None) -> list[str]:
    """Words of a literal, for looping over a short fixed list in a template."""
    return str(value).split(sep)


@register.filter
def split_triples(value: str) -> list[list[str]]:
    """ "a:b:c,d:e:f" as [[a, b, c], [d, e, f]], for small fixed field lists in templates."""
    return [item.split(":") for item in str(value).split(",") if item]


@register.simple_tag
def job_target(job: object) -> str:
    """A job's target by name, linked to its page while it has one (not once deleted)."""
    target = str(getattr(job, "target", ""))
    kind, _, key = target.partition(":")
    result = getattr(job, "result", None)
    result = result if isinstance(result, dict) else {}
    host_id = getattr(job, "host_id", None)
    if kind == "host" and host_id is not None:
        return format_html('<a href="{}">{}</a>', reverse("host_detail", args=[host_id]), key)
    if kind not in TARGET_PAGES or not key:
        return target
    page, name_key = TARGET_PAGES[kind]
    name = str(result.get(name_key) or target)
    job_kind, done = str(getattr(job, "kind", "")), getattr(job, "state", "") == "succeeded"
    # The target's own delete and create (not a snapshot's, say).
    if job_kind == f"{kind}.delete" and done:
        return f"{name} (deleted)"
    if job_kind == f"{kind}.create" and not done:
        return name  # no page until it is made
    try:
        url = reverse(page, args=[key])
    except NoReverseMatch:  # a target the panel did not write (no page of that form)
        return name
    return format_html('<a href="{}">{}</a>', url, name)


# The sidebar's resource tree: hosts at its top (each opened on demand), at most this many.
TREE_HOSTS = 50


@register.inclusion_tag("panel/_tree.html", takes_context=True)
def resource_tree(context: dict) -> dict:
    """The sidebar: the hosts and projects the user sees, one query each; a host's VMs,
    pools and networks are fetched when the user opens it (vms.tree)."""
    user = context["request"].user
    hosts = visible_hosts(user).only("pk", "name", "state")[:TREE_HOSTS]
    projects = restrict(Project.objects.only("pk", "name"), user, VIEW)[:TREE_HOSTS]
    return {"hosts": hosts, "projects": projects, "is_admin": is_admin(user)}


@register.simple_tag(takes_context=True)
def task_panel(context: template.Context) -> str:
    """The task panel at the foot of a signed-in page: its bar, and its rows' signature
    for the script, which fetches the rows once the panel is open (rendering them here
    would cost every page as much again as the panel's queries). Pages without it (the
    error pages, the consoles) empty base.html's task_panel block: nothing is queried."""
    user = getattr(context.get("request"), "user", None)
    page = context.template
    if user is None or not user.is_authenticated or page is None:
        return ""
    frame = page.engine.get_template("panel/_task_panel_frame.html")
    return str(frame.render(context.new({"panel": recent_tasks(user, rows=False)})))


@register.simple_tag(takes_context=True)
def unread_notifications(context: template.Context) -> int:
    """The bell's number: the signed-in user's unread notifications."""
    request = context.get("request")
    return unread_count(getattr(request, "user", None))
