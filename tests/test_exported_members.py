from __future__ import annotations

import skaala_auth


def test_if_package_imported_then_all_is_complete_and_sorted() -> None:
    public = {
        name
        for name, value in vars(skaala_auth).items()
        if not name.startswith(("_", "@"))  # "@py_builtins": pytest's assertion rewriting
        and not getattr(value, "__name__", "").startswith("skaala_auth.")
    }
    # submodules (skaala_auth.keys, …) are not exports
    public = {name for name in public if not hasattr(getattr(skaala_auth, name), "__path__")}
    public -= {"annotations"}
    exported = set(skaala_auth.__all__) - {"__version__"}
    assert public == exported
    assert skaala_auth.__all__ == sorted(skaala_auth.__all__)


def test_if_design_names_then_importable() -> None:
    from skaala_auth import (  # noqa: F401
        ApiKey,
        Authenticator,
        AuthError,
        KeyManager,
        MemoryKeyStore,
        Principal,
        SQLiteKeyStore,
    )
