from django.contrib.auth import views as auth_views
from django.urls import include, path

from . import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("hosts/", views.host_list, name="host_list"),
    path("hosts/add/", views.host_add, name="host_add"),
    path("hosts/<int:host_id>/", views.host_detail, name="host_detail"),
    path("hosts/<int:host_id>/refresh/", views.host_refresh, name="host_refresh"),
    path("hosts/<int:host_id>/delete/", views.host_delete, name="host_delete"),
    path("jobs/", views.job_list, name="job_list"),
    path("jobs/<int:job_id>/", views.job_detail, name="job_detail"),
    path("jobs/<int:job_id>/cancel/", views.job_cancel, name="job_cancel"),
    path("audit/", views.audit_list, name="audit_list"),
    path("vms/", include("vms.urls")),
    path("storage/", include("storage.urls")),
    path("networks/", include("networking.urls")),
    path("api/v1/", include("panel.api.urls")),
]
