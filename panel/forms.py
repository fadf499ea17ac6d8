from django import forms


class HostForm(forms.Form):
    """Add a host by its libvirt URI."""

    name = forms.CharField(max_length=100, help_text="A short name shown everywhere, e.g. kvm01.")
    uri = forms.CharField(
        max_length=500,
        label="libvirt URI",
        help_text="qemu:///system for this machine; qemu+ssh://root@host/system, "
        "qemu+tls://host/system or qemu+tcp://host/system for others.",
    )
