from django.urls import path

from . import library_views, views, volume_views

urlpatterns = [
    path("", views.pool_list, name="pool_list"),
    path("library/", library_views.library_list, name="library_list"),
    path("library/add/", library_views.library_add, name="library_add"),
    path("library/<int:image_id>/", library_views.library_detail, name="library_detail"),
    path("library/<int:image_id>/edit/", library_views.library_edit, name="library_edit"),
    path("library/<int:image_id>/delete/", library_views.library_delete, name="library_delete"),
    path("add/", views.pool_add, name="pool_add"),
    path("<int:pool_id>/", views.pool_detail, name="pool_detail"),
    path("<int:pool_id>/upload/", views.upload_page, name="pool_upload"),
    path("<int:pool_id>/volumes/add/", views.volume_add, name="volume_add"),
    path("<int:pool_id>/autostart/", views.pool_autostart, name="pool_autostart"),
    path("<int:pool_id>/shared-storage/", views.pool_shared_storage, name="pool_shared_storage"),
    path("<int:pool_id>/delete/", views.pool_delete, name="pool_delete"),
    path("<int:pool_id>/build/", views.pool_build, name="pool_build"),
    path("<int:pool_id>/start/", views.pool_start, name="pool_start"),
    path("<int:pool_id>/stop/", views.pool_stop, name="pool_stop"),
    path("<int:pool_id>/refresh/", views.pool_refresh, name="pool_refresh"),
    path("volumes/<int:volume_id>/", views.volume_detail, name="volume_detail"),
    path("volumes/<int:volume_id>/resize/", volume_views.volume_resize, name="volume_resize"),
    path("volumes/<int:volume_id>/clone/", volume_views.volume_copy, name="volume_clone"),
    path("volumes/<int:volume_id>/convert/", volume_views.volume_copy, name="volume_convert"),
    path("volumes/<int:volume_id>/wipe/", volume_views.volume_wipe, name="volume_wipe"),
    path("volumes/<int:volume_id>/check/", volume_views.volume_check, name="volume_check"),
    path("volumes/<int:volume_id>/info/", volume_views.volume_info, name="volume_info"),
    path("volumes/<int:volume_id>/share/", volume_views.volume_share, name="volume_share"),
    path("volumes/<int:volume_id>/assign/", volume_views.volume_assign, name="volume_assign"),
    path("volumes/<int:volume_id>/delete/", volume_views.volume_delete, name="volume_delete"),
]
