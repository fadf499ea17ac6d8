from rest_framework.pagination import PageNumberPagination

from panel.paging import KeyFirstPaginator


class PanelPagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class KeyFirstPagination(PanelPagination):
    """For the longest lists: each page's keys first, then its rows (panel.paging)."""

    django_paginator_class = KeyFirstPaginator
