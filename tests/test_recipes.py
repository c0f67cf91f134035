"""Every shipped recipe is a valid train.py config: a typo in a setting fails here, not hours into a run."""
from __future__ import annotations

from pathlib import Path

import pytest

import zoo
from bench.realspeech import load_recipe
from kws.data import parse_spec

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").rglob("*.yaml"))


def test_there_are_recipes():
    assert len(RECIPES) >= 5


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_resolves(path: Path):
    cfg = load_recipe(path)
    assert zoo.is_model(cfg.model)
    if cfg.data:
        assert parse_spec(cfg.data)
    for ref in (cfg.init_from, cfg.teacher):  # cv:<recipe> names another recipe of this folder
        if ref and ref.startswith("cv:"):
            assert any(p.stem == ref[3:] for p in RECIPES), ref
