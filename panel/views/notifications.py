"""The bell's page (my notifications, marked read one by one or all at once) and my
subscriptions with the log of their deliveries."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from panel import notifications
from panel.actors import Actor
from panel.exceptions import ServiceError
from panel.forms import SubscriptionForm
from panel.models import Delivery, Notification, Subscription
from panel.permissions import get_own, personal
from panel.views.common import add_service_error, render_form

SHOWN = 100


@require_GET
def notification_list(request: HttpRequest) -> HttpResponse:
    found = personal(Notification.objects.select_related("project"), request.user)
    context = {"notifications": found[:SHOWN], "unread": notifications.unread_count(request.user)}
    return render(request, "panel/notification_list.html", context)


@require_POST
def notification_read(request: HttpRequest, notification_id: int) -> HttpResponse:
    note = notifications.mark_read(
        get_own(Notification.objects.all(), request.user, notification_id)
    )
    safe = url_has_allowed_host_and_scheme(note.link, allowed_hosts=None)
    return redirect(
        note.link if note.link and safe and "open" in request.POST else "notification_list"
    )


@require_POST
def notification_read_all(request: HttpRequest) -> HttpResponse:
    count = notifications.mark_all_read(request.user)
    messages.success(request, f"{count} notification{'s' if count != 1 else ''} marked read.")
    return redirect("notification_list")


def _subscriptions_page(request: HttpRequest, form: SubscriptionForm) -> HttpResponse:
    subs = personal(Subscription.objects.select_related("project"), request.user)
    deliveries = personal(Delivery.objects.select_related("notification"), request.user)[:50]
    context = {"subscriptions": subs, "deliveries": deliveries}
    return render_form(request, "panel/subscription_list.html", context, form)


@require_GET
def subscription_list(request: HttpRequest) -> HttpResponse:
    return _subscriptions_page(request, SubscriptionForm(request.user))


@require_POST
def subscription_add(request: HttpRequest) -> HttpResponse:
    form = SubscriptionForm(request.user, request.POST)
    if form.is_valid():
        project = form.cleaned_data["project"]
        spec = notifications.SubscriptionSpec(
            kinds=form.cleaned_data["kinds"],
            project=project.pk if project else None,
            email=form.cleaned_data["email"],
            webhook_url=form.cleaned_data["webhook_url"],
        )
        try:
            notifications.save_subscription(None, spec, actor=Actor.of(request))
        except ServiceError as exc:
            add_service_error(form, exc)
        else:
            messages.success(request, "Subscribed.")
            return redirect("subscription_list")
    return _subscriptions_page(request, form)


@require_POST
def subscription_delete(request: HttpRequest, subscription_id: int) -> HttpResponse:
    sub = get_own(Subscription.objects.all(), request.user, subscription_id)
    notifications.delete_subscription(sub, actor=Actor.of(request))
    messages.success(request, "The subscription was removed.")
    return redirect("subscription_list")
