"""Who an open websocket still belongs to (panel.socket_access.current_user), and the
console stream that waits its turn instead of taking the console over."""

from __future__ import annotations

import pytest
from django.test import Client

from panel import hypervisor
from panel.socket_access import current_user
from tests.conftest import LOCAL_URI


@pytest.fixture
def logged_in(django_user_model):
    user = django_user_model.objects.create_user("sam", "", "Lantern-ridge-41q")
    client = Client()
    client.force_login(user)
    return user, client, client.session.session_key


@pytest.mark.django_db
def test_it_keeps_a_socket_of_a_logged_in_session(logged_in):
    user, _client, session_key = logged_in
    assert current_user(user.pk, session_key) == user


@pytest.mark.django_db
def test_it_drops_a_socket_once_its_session_logs_out(logged_in):
    user, client, session_key = logged_in
    client.post("/logout/")
    assert current_user(user.pk, session_key) is None


@pytest.mark.django_db
def test_it_drops_a_socket_once_the_password_changed_and_leaves_the_session_alone(logged_in):
    from django.contrib.sessions.models import Session

    user, _client, session_key = logged_in
    user.set_password("Granite-willow-35p")
    user.save()
    assert current_user(user.pk, session_key) is None
    # Read only: the session is Django's to end at the user's next request.
    assert Session.objects.filter(session_key=session_key).exists()


@pytest.mark.django_db
def test_it_drops_a_socket_of_a_disabled_user_with_or_without_a_session(logged_in):
    user, _client, session_key = logged_in
    assert current_user(user.pk, None) == user  # opened with a console ticket alone
    user.is_active = False
    user.save()
    assert current_user(user.pk, session_key) is None
    assert current_user(user.pk, None) is None


@pytest.mark.django_db
def test_it_drops_a_socket_whose_session_is_another_users(logged_in, django_user_model):
    _user, _client, session_key = logged_in
    other = django_user_model.objects.create_user("tess", "", "Copper-kettle-77z")
    assert current_user(other.pk, session_key) is None


@pytest.mark.libvirt
def test_it_waits_its_turn_for_a_console_someone_holds(tiny_guest):
    holder = hypervisor.open_console(LOCAL_URI, tiny_guest.uuid)
    try:
        with pytest.raises(hypervisor.ConsoleBusy):
            hypervisor.open_console(LOCAL_URI, tiny_guest.uuid, take_over=False)
        assert not holder.closed, "the holder kept the console"
    finally:
        holder.close()
    second = hypervisor.open_console(LOCAL_URI, tiny_guest.uuid, take_over=False)
    second.close()
