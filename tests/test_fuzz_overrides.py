"""Whatever a user types after --set, the parser answers with a value or a ConfigError, never a crash."""

from hypothesis import given, settings
from hypothesis import strategies as st

from harness.config import ConfigError, apply_overrides, parse_overrides
from recipes import get_recipe, setting_fields

KEYS = st.sampled_from(setting_fields() + ["lrr", "", "name", "reference"])
VALUES = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        [
            "1e-3",
            "None",
            "True",
            "(0.5, 1.0)",
            "[1, 2]",
            "{'a': 1}",
            "1e400",
            "-1",
            "0",
            "'cosine'",
            "lamb",
            "(",
            "1" * 5000,
            "__import__('os')",
        ]
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(KEYS, VALUES), max_size=4))
def test_set_overrides_never_crash(pairs):
    items = [f"{k}={v}" for k, v in pairs]
    try:
        recipe = apply_overrides(get_recipe("rsb_a3"), parse_overrides(items))
    except ConfigError as e:
        assert str(e) and "\n" not in str(e)
    else:
        for key, _ in pairs:
            assert hasattr(recipe, key)
