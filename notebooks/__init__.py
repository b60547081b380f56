"""The demo notebooks, installed as the package lakemagic.notebooks so that `lakemagic demo` finds them."""
