from django.contrib.auth import views as auth_views
from django.urls import include, path

from monitoring.views import metrics

from . import views
from .views import second_factor, sessions, two_factor
from .views.site import favicon
from .views.sso import oidc_callback, oidc_login

handler403 = "panel.views.errors.permission_denied"
handler404 = "panel.views.errors.not_found"
handler500 = "panel.views.errors.server_error"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("favicon.ico", favicon, name="favicon"),
    path("login/", second_factor.PanelLoginView.as_view(), name="login"),
    path("login/second/", second_factor.login_second, name="login_second"),
    path(
        "login/second/key/options/",
        second_factor.login_second_key_options,
        name="login_second_key_options",
    ),
    path("login/second/key/", second_factor.login_second_key, name="login_second_key"),
    path("login/oidc/", oidc_login, name="oidc_login"),
    path("login/oidc/callback/", oidc_callback, name="oidc_callback"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("account/", views.account, name="account"),
    path("account/tokens/", views.token_list, name="token_list"),
    path("account/tokens/add/", views.token_add, name="token_add"),
    path("account/tokens/<int:token_id>/revoke/", views.token_revoke, name="token_revoke"),
    path("account/two-factor/", two_factor.two_factor, name="two_factor"),
    path("account/two-factor/totp/", two_factor.totp_start, name="totp_start"),
    path("account/two-factor/totp/confirm/", two_factor.totp_confirm, name="totp_confirm"),
    path("account/two-factor/totp/remove/", two_factor.totp_disable, name="totp_disable"),
    path(
        "account/two-factor/recovery/",
        two_factor.recovery_regenerate,
        name="recovery_regenerate",
    ),
    path(
        "account/two-factor/keys/options/",
        two_factor.webauthn_register_options,
        name="webauthn_register_options",
    ),
    path("account/two-factor/keys/", two_factor.webauthn_register, name="webauthn_register"),
    path(
        "account/two-factor/keys/<int:key_id>/remove/",
        two_factor.webauthn_remove,
        name="webauthn_remove",
    ),
    path("users/second-factor/", two_factor.second_factor_policy, name="second_factor_policy"),
    path("account/reauth/", sessions.reauth_page, name="reauth"),
    path("account/sessions/", sessions.session_list, name="session_list"),
    path(
        "account/sessions/<int:session_id>/revoke/",
        sessions.session_revoke,
        name="session_revoke",
    ),
    path("account/sessions/revoke-all/", sessions.session_revoke_all, name="session_revoke_all"),
    path("hosts/", views.host_list, name="host_list"),
    path("hosts/add/", views.host_add, name="host_add"),
    path("hosts/<int:host_id>/", views.host_detail, name="host_detail"),
    path("hosts/<int:host_id>/refresh/", views.host_refresh, name="host_refresh"),
    path("hosts/<int:host_id>/certificates/", views.host_certificates, name="host_certificates"),
    path("hosts/<int:host_id>/accept-key/", views.host_accept_key, name="host_accept_key"),
    path(
        "hosts/<int:host_id>/migration-address/",
        views.host_migration_address,
        name="host_migration_address",
    ),
    path("hosts/<int:host_id>/delete/", views.host_delete, name="host_delete"),
    path("jobs/", views.job_list, name="job_list"),
    path("jobs/panel/", views.job_panel, name="job_panel"),
    path("jobs/<int:job_id>/", views.job_detail, name="job_detail"),
    path("jobs/<int:job_id>/cancel/", views.job_cancel, name="job_cancel"),
    path("projects/", views.project_list, name="project_list"),
    path("projects/add/", views.project_add, name="project_add"),
    path("projects/<int:project_id>/", views.project_detail, name="project_detail"),
    path("projects/<int:project_id>/edit/", views.project_edit, name="project_edit"),
    path("projects/<int:project_id>/members/", views.project_member_add, name="project_member_add"),
    path(
        "projects/<int:project_id>/members/<int:user_id>/remove/",
        views.project_member_remove,
        name="project_member_remove",
    ),
    path("projects/<int:project_id>/grants/", views.project_grant_add, name="project_grant_add"),
    path(
        "projects/<int:project_id>/grants/<int:grant_id>/remove/",
        views.project_grant_remove,
        name="project_grant_remove",
    ),
    path("roles/", views.role_list, name="role_list"),
    path("roles/<int:role_id>/", views.role_edit, name="role_edit"),
    path("roles/<int:role_id>/delete/", views.role_delete, name="role_delete"),
    path("groups/", views.group_list, name="group_list"),
    path("groups/<int:group_id>/", views.group_edit, name="group_edit"),
    path("users/", views.user_list, name="user_list"),
    path("users/<int:user_id>/active/", views.user_set_active, name="user_set_active"),
    path("users/<int:user_id>/tokens/", views.user_tokens, name="user_tokens"),
    path("users/<int:user_id>/password/", views.user_reset_password, name="user_reset_password"),
    path("directory-groups/", views.directory_mapping_list, name="directory_mapping_list"),
    path(
        "directory-groups/<int:mapping_id>/delete/",
        views.directory_mapping_delete,
        name="directory_mapping_delete",
    ),
    path("users/<int:user_id>/sessions/", sessions.user_sessions, name="user_sessions"),
    path(
        "users/<int:user_id>/sessions/<int:session_id>/revoke/",
        sessions.user_session_revoke,
        name="user_session_revoke",
    ),
    path(
        "users/<int:user_id>/sessions/revoke-all/",
        sessions.user_sessions_revoke_all,
        name="user_sessions_revoke_all",
    ),
    path("notifications/", views.notification_list, name="notification_list"),
    path(
        "notifications/<int:notification_id>/read/",
        views.notification_read,
        name="notification_read",
    ),
    path("notifications/read-all/", views.notification_read_all, name="notification_read_all"),
    path("notifications/subscriptions/", views.subscription_list, name="subscription_list"),
    path("notifications/subscriptions/add/", views.subscription_add, name="subscription_add"),
    path(
        "notifications/subscriptions/<int:subscription_id>/delete/",
        views.subscription_delete,
        name="subscription_delete",
    ),
    path("audit/", views.audit_list, name="audit_list"),
    path("audit/export.csv", views.audit_export, name="audit_export"),
    # Before vms.urls, whose <uuid>/<action>/ would take <uuid>/tuning/.
    path("vms/", include("vms.tuning_urls")),
    path("vms/", include("vms.urls")),
    path("storage/", include("storage.urls")),
    path("networks/", include("networking.urls")),
    path("api/v1/", include("panel.api.urls")),
    path("metrics", metrics, name="metrics"),
]
