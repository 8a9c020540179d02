"""Which way a run's data goes: the in-memory path wherever the data fits (the RSB recipes too, their policy on the
device), uint8 workers for files, and refusals that say why."""

import dataclasses

import pytest

from harness.data.route import DataRoute, RouteError, choose_route
from recipes import get_recipe


def route(loader: str, augment_on: str, recipe, dataset: str, world: int) -> DataRoute:
    """The route for data not read from files (so nothing to decode), --decode-on auto."""
    return choose_route(loader, augment_on, "auto", recipe, dataset, world, source=None)


@pytest.mark.parametrize("name", ["rsb_a1", "rsb_a2", "rsb_a3"])
def test_rsb_recipes_take_the_in_memory_path_with_their_policy_on_the_device(name):
    recipe = get_recipe(name)
    assert route("auto", "auto", recipe, "fashion_mnist", 1) == DataRoute("memory", "device")
    assert route("auto", "auto", recipe, "fashion_mnist", 8) == DataRoute("memory", "device")
    assert route("auto", "auto", recipe, "imagenet", 8) == DataRoute("workers", "device")
    assert route("auto", "workers", recipe, "digits", 1) == DataRoute("workers", "workers")


def test_a_recipe_without_a_policy_records_none():
    assert route("auto", "auto", get_recipe("baseline"), "cifar10", 1) == DataRoute("memory", None)
    assert route("workers", "device", get_recipe("baseline"), "cifar10", 1) == DataRoute("workers", None)


def test_colour_jitter_after_a_3a_policy_keeps_the_policy_in_the_workers_on_files():
    recipe = dataclasses.replace(get_recipe("rsb_a3"), aa="3a", color_jitter=0.3)
    assert route("auto", "auto", recipe, "imagenet", 1) == DataRoute("workers", "workers")
    assert route("auto", "auto", recipe, "digits", 1) == DataRoute("memory", "device")  # jitter follows there
    with pytest.raises(RouteError, match=r"^--augment-on device cannot run rsb_a3: its colour jitter follows the 3a"):
        route("auto", "device", recipe, "imagenet", 1)


def test_requests_the_recipe_cannot_take_are_refused_naming_the_way_out():
    with pytest.raises(RouteError, match=r"--loader memory cannot run rsb_a3: .*per image.*; use --loader workers$"):
        route("memory", "workers", get_recipe("rsb_a3"), "digits", 1)
    with pytest.raises(RouteError, match=r"dataset imagenet is read from files.*; use --loader workers$"):
        route("memory", "auto", get_recipe("rsb_a3"), "imagenet", 1)
