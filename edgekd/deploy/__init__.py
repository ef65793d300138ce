"""Packaging the selected artifact for deployment: a folder with its files, a model card and a standalone script."""

from edgekd.deploy.card import build_card, render_card
from edgekd.deploy.folder import remove_deploy, write_deploy

__all__ = ["build_card", "remove_deploy", "render_card", "write_deploy"]
