"""Settings of the panel. Everything a deployment changes comes from the environment.

Embedded defaults: SQLite under var/, Redis on 127.0.0.1:6379, the local
qemu:///system host. PANEL_PRODUCTION=1 turns on the hardened mode.
"""

import os
import secrets
import sys
from pathlib import Path
from typing import Any

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("PANEL_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _env_bool(name: str, default: bool = False) -> bool:
    return os.environ.get(name, "1" if default else "0").lower() in {"1", "true", "yes", "on"}


def _secret_key() -> str:
    if key := os.environ.get("PANEL_SECRET_KEY"):
        return key
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


# A pytest run gets its own database file, Celery queue and channel-layer
# prefix, so test runs (and a panel started with make run) never share work.
TESTING = "pytest" in sys.modules
TEST_RUN_ID = f"test-{os.getpid()}"

PRODUCTION = _env_bool("PANEL_PRODUCTION")
DEBUG = _env_bool("PANEL_DEBUG") and not PRODUCTION
SECRET_KEY = _secret_key()
ALLOWED_HOSTS = os.environ.get("PANEL_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]").split(",")
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("PANEL_CSRF_TRUSTED_ORIGINS", "").split(",") if o]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_results",
    "django_celery_beat",
    "channels",
    "panel",
    "vms",
    "storage",
    "networking",
    "monitoring",
]

MIDDLEWARE = [
    "panel.middleware.ContentSecurityPolicyMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "panel.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "panel.identity.middleware.SessionPolicyMiddleware",
    "panel.identity.enforcement.SecondFactorRequiredMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "panel.middleware.DatabaseBusyMiddleware",
]

ROOT_URLCONF = "panel.urls"
ASGI_APPLICATION = "panel.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{VAR_DIR / 'panel.sqlite3'}", conn_max_age=0
    )
}
# The web server runs every request in a thread of its own; on PostgreSQL it takes their
# connections from a pool of PANEL_DB_POOL (10) per process, so a burst of requests waits
# for a connection (PANEL_DB_POOL_TIMEOUT, 10 s, then a 503) instead of opening one each
# until the server has none left. Only the web server: the workers' processes fork, and
# a pool does not survive a fork.
WEB_SERVER = Path(sys.argv[0]).name in {"uvicorn", "gunicorn", "daphne"}
DB_POOL = int(os.environ.get("PANEL_DB_POOL", "10"))
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and WEB_SERVER and DB_POOL:
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": DB_POOL,
        "timeout": float(os.environ.get("PANEL_DB_POOL_TIMEOUT", "10")),
    }
    # A pooled connection is checked before use: after a database restart the pool
    # replaces the ones that broke instead of handing them out.
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web server, worker, beat and watcher write to one file: WAL lets readers
    # go on while one writes, IMMEDIATE avoids lock upgrades that deadlock.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["TEST"] = {
        "NAME": os.environ.get("PANEL_TEST_DB", str(VAR_DIR / f"{TEST_RUN_ID}.sqlite3"))
    }
else:
    # One test database per run, so two runs on one server never drop each other's.
    DATABASES["default"]["TEST"] = {
        "NAME": os.environ.get(
            "PANEL_TEST_DB", f"test_{DATABASES['default']['NAME']}_{os.getpid()}"
        )
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.environ.get("PANEL_STATIC_ROOT", VAR_DIR / "staticfiles"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

if TESTING or _env_bool("PANEL_DEV_STATIC"):
    # Tests (and the servers they start) serve static files straight from static/,
    # so they never depend on a collectstatic run.
    STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}
    WHITENOISE_USE_FINDERS = True
    WHITENOISE_AUTOREFRESH = True

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
# Content-Security-Policy (panel.middleware): our own static files only, no inline
# script or style; connect-src (this host's websockets and websockify) is added per request.
PANEL_CSP = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "font-src": "'self'",
    "frame-ancestors": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
    "object-src": "'none'",
}
if PRODUCTION:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = _env_bool("PANEL_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = int(os.environ.get("PANEL_HSTS_SECONDS", "31536000"))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        # JSON, never pickles: see panel/cache.py.
        "OPTIONS": {"serializer": "panel.cache.JSONSerializer"},
        "KEY_PREFIX": f"panel-{TEST_RUN_ID}"
        if TESTING
        else os.environ.get("PANEL_CACHE_PREFIX", "panel"),
    }
}

# Login throttling: this many failures per username + address in the window.
PANEL_LOGIN_FAILURES = int(os.environ.get("PANEL_LOGIN_FAILURES", "5"))
PANEL_LOGIN_WINDOW_SECONDS = int(os.environ.get("PANEL_LOGIN_WINDOW_SECONDS", "900"))
# ... and this many failures from one address, whatever the usernames.
PANEL_LOGIN_ADDRESS_FAILURES = int(os.environ.get("PANEL_LOGIN_ADDRESS_FAILURES", "20"))
# Sessions end after PANEL_SESSION_IDLE_SECONDS without a request (1 hour) and, however
# busy, PANEL_SESSION_MAX_SECONDS after the login (12 hours); the session cookie lives as
# long. Sensitive actions (deleting a VM with its storage, user administration) ask for
# the password again when the last sign-in or confirmation is older than
# PANEL_REAUTH_SECONDS (5 minutes).
PANEL_SESSION_IDLE_SECONDS = int(os.environ.get("PANEL_SESSION_IDLE_SECONDS", "3600"))
PANEL_SESSION_MAX_SECONDS = int(os.environ.get("PANEL_SESSION_MAX_SECONDS", "43200"))
PANEL_REAUTH_SECONDS = int(os.environ.get("PANEL_REAUTH_SECONDS", "300"))
SESSION_COOKIE_AGE = PANEL_SESSION_MAX_SECONDS
# Second factors: how long a right password waits for its second factor, and the
# WebAuthn relying party (the host name the panel is reached by; blank: the request's
# host; never an IP address).
PANEL_SECOND_STEP_SECONDS = int(os.environ.get("PANEL_SECOND_STEP_SECONDS", "300"))
PANEL_WEBAUTHN_RP_ID = os.environ.get("PANEL_WEBAUTHN_RP_ID", "")
PANEL_WEBAUTHN_RP_NAME = os.environ.get("PANEL_WEBAUTHN_RP_NAME", "KVM panel")
# Reverse proxies (addresses or networks, comma-separated) whose X-Forwarded-For and
# X-Forwarded-Proto the panel believes; from anyone else those headers are ignored, and
# the client's address is the connection's (panel.asgi).
PANEL_TRUSTED_PROXIES = [
    p.strip() for p in os.environ.get("PANEL_TRUSTED_PROXIES", "").split(",") if p.strip()
]
# A starting worker fails the jobs of workers that missed two pings this far apart (a
# worker that never comes back under its name, e.g. a recreated container).
PANEL_WORKER_RECHECK_SECONDS = float(os.environ.get("PANEL_WORKER_RECHECK_SECONDS", "30"))
# Open websockets check this often that their user is still logged in, active and allowed
# (changes made through the panel reach them at once by an event; this catches the rest).
PANEL_WS_RECHECK_SECONDS = float(os.environ.get("PANEL_WS_RECHECK_SECONDS", "5"))

CHANNEL_LAYERS: dict[str, dict[str, Any]] = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            # redis-py 8 times reads out after 5 s by default, the same 5 s that
            # channels_redis blocks waiting for messages: every idle websocket
            # would drop. No read timeout here.
            "hosts": [{"address": REDIS_URL, "socket_timeout": None}],
            "prefix": f"panel-{TEST_RUN_ID}"
            if TESTING
            else os.environ.get("PANEL_CHANNEL_PREFIX", "panel"),
        },
    }
}

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", REDIS_URL)
CELERY_RESULT_BACKEND = "django-db"
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = (
    f"panel-{TEST_RUN_ID}" if TESTING else os.environ.get("PANEL_CELERY_QUEUE", "panel")
)
# Work that can run for minutes has a queue and workers of its own, so it never takes
# every worker slot from quick work (panel/queues.py routes each task).
PANEL_LONG_QUEUE = f"{CELERY_TASK_DEFAULT_QUEUE}.long"
CELERY_TASK_ROUTES = ("panel.queues.route",)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BEAT_SCHEDULE = {
    "reconcile-all-hosts": {
        "task": "panel.reconcile_all_hosts",
        "schedule": float(os.environ.get("PANEL_RECONCILE_SECONDS", "300")),
    },
    "run-backup-schedules": {"task": "vms.run_backup_schedules", "schedule": 60.0},
    "resend-lost-jobs": {"task": "panel.resend_lost_jobs", "schedule": 60.0},
    # Sessions that expired without a further request leave the store and the lists.
    "end-expired-sessions": {"task": "panel.end_expired_sessions", "schedule": 300.0},
}
# A job queued this long that no worker took has its task sent again (then 2x, 4x, ...).
PANEL_LOST_TASK_SECONDS = float(os.environ.get("PANEL_LOST_TASK_SECONDS", "60"))
# Where a VM goes when nobody names its host (create, drain): "spread" (the host with the
# most free memory, then the fewest VMs) or "pack" (the least free memory that still fits).
PANEL_PLACEMENT = os.environ.get("PANEL_PLACEMENT", "spread")
if PANEL_PLACEMENT not in ("spread", "pack"):
    raise SystemExit(f"PANEL_PLACEMENT is '{PANEL_PLACEMENT}': use spread or pack.")

# HA (vms.services.ha, `manage.py ha_monitor`): the HA agent of a host fences it (stops
# its HA VMs) after PANEL_HA_FENCE_SECONDS without a renewal of the panel's lease; the
# monitor renews every PANEL_HA_RENEW_SECONDS and declares a host lost only after
# fence + 2 renewals + PANEL_HA_MARGIN_SECONDS without reaching it. PANEL_HA_AGENT: the
# agent's command on the hosts (scripts/panel-ha-agent installed on their PATH).
PANEL_HA_FENCE_SECONDS = int(os.environ.get("PANEL_HA_FENCE_SECONDS", "30"))
PANEL_HA_RENEW_SECONDS = int(os.environ.get("PANEL_HA_RENEW_SECONDS", "3"))
PANEL_HA_MARGIN_SECONDS = int(os.environ.get("PANEL_HA_MARGIN_SECONDS", "5"))
PANEL_HA_AGENT = os.environ.get("PANEL_HA_AGENT", "panel-ha-agent")
if (
    not 5 <= PANEL_HA_FENCE_SECONDS <= 600
    or not 1 <= PANEL_HA_RENEW_SECONDS < PANEL_HA_FENCE_SECONDS
):
    raise SystemExit(
        "PANEL_HA_FENCE_SECONDS must be 5 to 600 and PANEL_HA_RENEW_SECONDS 1 to less than it."
    )

# Directory sign-on (LDAP / Active Directory, panel/identity/ldap.py): off unless
# PANEL_LDAP_URI is set. The README's "Directory (LDAP/AD)" section explains each one.
PANEL_LDAP_URI = os.environ.get("PANEL_LDAP_URI", "")
PANEL_LDAP_BIND_DN = os.environ.get("PANEL_LDAP_BIND_DN", "")
PANEL_LDAP_BIND_PASSWORD = os.environ.get("PANEL_LDAP_BIND_PASSWORD", "")
PANEL_LDAP_START_TLS = _env_bool("PANEL_LDAP_START_TLS")
PANEL_LDAP_USER_BASE = os.environ.get("PANEL_LDAP_USER_BASE", "")
# %(user)s: the login name, escaped. Active Directory: (sAMAccountName=%(user)s).
PANEL_LDAP_USER_FILTER = os.environ.get("PANEL_LDAP_USER_FILTER", "(uid=%(user)s)")
PANEL_LDAP_GROUP_BASE = os.environ.get("PANEL_LDAP_GROUP_BASE", "")
# groupOfNames, groupOfUniqueNames, posixGroup or activeDirectory (nested groups).
PANEL_LDAP_GROUP_TYPE = os.environ.get("PANEL_LDAP_GROUP_TYPE", "groupOfNames")
_LDAP_GROUP_TYPES = ("groupOfNames", "groupOfUniqueNames", "posixGroup", "activeDirectory")
if PANEL_LDAP_GROUP_TYPE not in _LDAP_GROUP_TYPES:
    raise SystemExit(
        f"PANEL_LDAP_GROUP_TYPE is '{PANEL_LDAP_GROUP_TYPE}': use {', '.join(_LDAP_GROUP_TYPES)}."
    )
# A filter an enabled user's entry matches; empty: every entry the user search finds.
# Active Directory: (!(userAccountControl:1.2.840.113556.1.4.803:=2)).
PANEL_LDAP_ACTIVE_FILTER = os.environ.get("PANEL_LDAP_ACTIVE_FILTER", "")
PANEL_LDAP_ATTR_EMAIL = os.environ.get("PANEL_LDAP_ATTR_EMAIL", "mail")
PANEL_LDAP_ATTR_FIRST_NAME = os.environ.get("PANEL_LDAP_ATTR_FIRST_NAME", "givenName")
PANEL_LDAP_ATTR_LAST_NAME = os.environ.get("PANEL_LDAP_ATTR_LAST_NAME", "sn")
PANEL_LDAP_TIMEOUT = float(os.environ.get("PANEL_LDAP_TIMEOUT", "10"))
PANEL_LDAP_SYNC_SECONDS = float(os.environ.get("PANEL_LDAP_SYNC_SECONDS", "900"))
AUTHENTICATION_BACKENDS = [
    *(["panel.identity.ldap.DirectoryBackend"] if PANEL_LDAP_URI else []),
    "django.contrib.auth.backends.ModelBackend",
]
if PANEL_LDAP_URI:
    CELERY_BEAT_SCHEDULE["sync-ldap-directory"] = {
        "task": "panel.sync_ldap_directory",
        "schedule": PANEL_LDAP_SYNC_SECONDS,
    }

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Named, hashed tokens (and keys made before them), with their privilege ceiling.
        "panel.identity.token_auth.PanelTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
        "panel.identity.enforcement.SecondFactorSetUp",
    ],
    "DEFAULT_PAGINATION_CLASS": "panel.api.pagination.PanelPagination",
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.SearchFilter",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_SCHEMA_CLASS": "panel.api.schema.PanelAutoSchema",
    "EXCEPTION_HANDLER": "panel.api.errors.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "KVM panel API",
    "DESCRIPTION": "Hosts, virtual machines, storage and networks on libvirt.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "ENUM_NAME_OVERRIDES": {
        "HostStateEnum": "panel.choices.HostState",
        "VMStateEnum": "vms.choices.VMState",
        "JobStateEnum": "panel.choices.JobState",
        "NotificationKindEnum": "panel.choices.NotificationKind",
        "NetworkModeEnum": "networking.choices.NetworkMode",
        "LibraryImageKindEnum": "storage.models.ImageKind",
        "LibraryImageStateEnum": "storage.models.ImageState",
        "TokenPrivilegeEnum": "panel.privileges.TOKEN_CHOICES",
        "RolePrivilegeEnum": "panel.privileges.ROLE_CHOICES",
    },
}

# The local host registered on first start, and the websockify endpoint that
# consoles are served through.
PANEL_LOCAL_URI = os.environ.get("PANEL_LIBVIRT_URI", "qemu:///system")
PANEL_WEBSOCKIFY_URL = os.environ.get("PANEL_WEBSOCKIFY_URL", "ws://127.0.0.1:6080/")
# Directories under which admins may put directory pools and pick kernels or ISOs by path.
PANEL_STORAGE_ROOTS = [
    r
    for r in os.environ.get(
        "PANEL_STORAGE_ROOTS", "/var/lib/libvirt/images,/var/lib/libvirt/boot,/srv/libvirt"
    ).split(",")
    if r
]
# URL prefixes install trees must start with (empty: any http(s) address except
# loopback, private and link-local ones).
PANEL_INSTALL_MIRRORS = [
    m.strip() for m in os.environ.get("PANEL_INSTALL_MIRRORS", "").split(",") if m.strip()
]
# URL prefixes the image library may fetch images and SUMS files from (empty: any
# http(s) address except loopback, private and link-local ones).
PANEL_LIBRARY_MIRRORS = [
    m.strip() for m in os.environ.get("PANEL_LIBRARY_MIRRORS", "").split(",") if m.strip()
]
PANEL_CONNECT_TIMEOUT = float(os.environ.get("PANEL_CONNECT_TIMEOUT", "10"))
# The certificates of the qemu+tls hosts, one directory per host (0700, keys 0600).
PANEL_PKI_DIR = Path(os.environ.get("PANEL_PKI_DIR", VAR_DIR / "pki"))
# The panel's SSH key pair (made on first need) and the host keys pinned for qemu+ssh hosts.
PANEL_SSH_DIR = Path(os.environ.get("PANEL_SSH_DIR", VAR_DIR / "ssh"))
# Prometheus scrapes /metrics with "Authorization: Bearer <this>" (empty: admins only).
PANEL_METRICS_TOKEN = os.environ.get("PANEL_METRICS_TOKEN", "")
# The kernel and initramfs that the KVM check boots to prove a guest really runs.
PANEL_PROBE_GUEST_DIR = os.environ.get(
    "PANEL_TEST_GUEST_DIR", "/var/lib/libvirt/boot/panel-test-guest"
)

# Notifications (panel/notifications): mail through this SMTP server, webhooks only to
# public addresses unless listed here (networks or host names, comma-separated), repeats
# of one event within the window told in one summary, failed deliveries tried again
# after PANEL_NOTIFY_RETRY_SECONDS, doubling, up to PANEL_NOTIFY_ATTEMPTS attempts.
EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
EMAIL_HOST = os.environ.get("PANEL_SMTP_HOST", "127.0.0.1")
EMAIL_PORT = int(os.environ.get("PANEL_SMTP_PORT", "25"))
EMAIL_HOST_USER = os.environ.get("PANEL_SMTP_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("PANEL_SMTP_PASSWORD", "")
EMAIL_USE_TLS = _env_bool("PANEL_SMTP_STARTTLS")
EMAIL_USE_SSL = _env_bool("PANEL_SMTP_SSL")
EMAIL_TIMEOUT = float(os.environ.get("PANEL_SMTP_TIMEOUT", "10"))
DEFAULT_FROM_EMAIL = os.environ.get("PANEL_MAIL_FROM", "kvm-panel@localhost")
PANEL_PUBLIC_URL = os.environ.get("PANEL_PUBLIC_URL", "")
PANEL_WEBHOOK_ALLOW = [
    a.strip() for a in os.environ.get("PANEL_WEBHOOK_ALLOW", "").split(",") if a.strip()
]
PANEL_NOTIFY_WINDOW_SECONDS = float(os.environ.get("PANEL_NOTIFY_WINDOW_SECONDS", "600"))
PANEL_NOTIFY_RETRY_SECONDS = float(os.environ.get("PANEL_NOTIFY_RETRY_SECONDS", "30"))
PANEL_NOTIFY_ATTEMPTS = int(os.environ.get("PANEL_NOTIFY_ATTEMPTS", "5"))

# Single sign-on with OpenID Connect (optional): set the issuer, the client's id and secret
# to show "Sign in with PANEL_OIDC_NAME" on the login page. The endpoints and signing keys
# come from the issuer's /.well-known/openid-configuration, read at the first sign-in.
PANEL_OIDC_ISSUER = os.environ.get("PANEL_OIDC_ISSUER", "").rstrip("/")
PANEL_OIDC_CLIENT_ID = os.environ.get("PANEL_OIDC_CLIENT_ID", "")
PANEL_OIDC_CLIENT_SECRET = os.environ.get("PANEL_OIDC_CLIENT_SECRET", "")
PANEL_OIDC_NAME = os.environ.get("PANEL_OIDC_NAME", "single sign-on")
PANEL_OIDC_SCOPES = os.environ.get("PANEL_OIDC_SCOPES", "openid profile email")
# The claims that hold a user's groups (mapped to projects and roles) and login name.
PANEL_OIDC_GROUPS_CLAIM = os.environ.get("PANEL_OIDC_GROUPS_CLAIM", "groups")
PANEL_OIDC_USERNAME_CLAIM = os.environ.get("PANEL_OIDC_USERNAME_CLAIM", "preferred_username")
PANEL_OIDC_TIMEOUT = float(os.environ.get("PANEL_OIDC_TIMEOUT", "10"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "filters": {"busy_database": {"()": "panel.logfilters.BusyDatabaseLog"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("PANEL_LOG_LEVEL", "INFO")},
    "loggers": {
        "django.channels.server": {"level": "WARNING"},
        "django.request": {"filters": ["busy_database"]},
        # Authlib writes the PKCE verifier of each OpenID Connect sign-in at DEBUG.
        "authlib": {"level": "INFO"},
    },
}
