from django.urls import path

from . import views

urlpatterns = [
    path("", views.pool_list, name="pool_list"),
    path("add/", views.pool_add, name="pool_add"),
    path("<int:pool_id>/", views.pool_detail, name="pool_detail"),
    path("<int:pool_id>/upload/", views.upload_page, name="pool_upload"),
    path("<int:pool_id>/volumes/add/", views.volume_add, name="volume_add"),
    path("<int:pool_id>/<str:action>/", views.pool_action, name="pool_action"),
    path("volumes/<int:volume_id>/", views.volume_detail, name="volume_detail"),
    path("volumes/<int:volume_id>/<str:action>/", views.volume_action, name="volume_action"),
]
