"""The declared data products, for tests that need one without building the definitions."""

from functools import cache

from lakehouse_assets.product_declarations import load_product
from lakehouse_assets.products.spec import Product
from lakehouse_assets.settings import LakehouseSettings


@cache
def product(name: str = "return_risk") -> Product:
    """A built-in product, resolved as the code location resolves it."""
    return load_product(LakehouseSettings(), name)


def variant(name: str = "return_risk", **overrides: object) -> Product:
    """A built-in product with parts of its declaration replaced (as `product_overrides` does)."""
    return load_product(LakehouseSettings(product_overrides={name: overrides}), name)
