from django import template

register = template.Library()

UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


@register.filter
def ibytes(value: object) -> str:
    """Bytes in binary units, as libvirt and qemu count them: 4.6 GiB."""
    try:
        size = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "—"
    for unit in UNITS:
        if abs(size) < 1024 or unit == UNITS[-1]:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} PiB"


@register.filter
def percent(value: object, total: object) -> int:
    """value as a whole percentage of total (0 when total is 0), for progress bars."""
    try:
        part, whole = float(value), float(total)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0
    return max(0, min(100, round(100 * part / whole))) if whole > 0 else 0


@register.filter
def split(value: str, sep: str | None = None) -> list[str]:
    """Words of a literal, for looping over a short fixed list in a template."""
    return str(value).split(sep)


@register.filter
def split_triples(value: str) -> list[list[str]]:
    """ "a:b:c,d:e:f" as [[a, b, c], [d, e, f]], for small fixed field lists in templates."""
    return [item.split(":") for item in str(value).split(",") if item]
