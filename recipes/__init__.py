"""Registry of published training procedures (data only).

Each family module registers its recipes when it is imported, and this package imports every family, as timm's
package imports its model modules: `import recipes` fills the registry. A new family is imported here.
"""

from recipes import ablation, baseline, reports, rsb  # noqa: F401  (importing a family registers its recipes)
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
