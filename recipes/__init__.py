"""Registry of published training procedures (data only)."""

from recipes._base import (
    NON_SETTING_FIELDS,
    Recipe,
    Reference,
    get_recipe,
    list_recipes,
    register,
    setting_fields,
)

__all__ = [
    "NON_SETTING_FIELDS",
    "Recipe",
    "Reference",
    "get_recipe",
    "list_recipes",
    "register",
    "setting_fields",
]
