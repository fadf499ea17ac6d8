from django import template

register = template.Library()

LABELS = {
    "start": "Start",
    "shutdown": "Shut down",
    "force-off": "Force off",
    "reboot": "Reboot",
    "reset": "Reset",
    "suspend": "Pause",
    "resume": "Resume",
    "save": "Save",
    "restore": "Restore",
}


@register.filter
def split(value: str) -> list[str]:
    return value.split()


@register.filter
def action_label(action: str) -> str:
    return LABELS.get(action, action)
