"""Runs the Lua script as Resolve runs it, in lupa's LuaJIT (or plain Lua 5.1), against the
in-memory Resolve of tests/fakes/resolve.py.

Resolve's Lua binding is modelled over the Python fake, as Resolve's scripting README and the
Fusion scripting guide describe it:

- API objects (``resolve``, projects, timelines, items, the UIManager and its widgets) reach
  Lua as opaque objects whose methods are called with a colon, ``timeline:GetName()``; a dot
  call (``timeline.GetName()``) passes no object and fails here, as it does in Resolve;
- ``bmd`` is a library: its functions are called with a dot, ``bmd.UIDispatcher(ui)``;
- lists and dicts travel as Lua tables (lists from 1), both ways; ``nil`` is ``None``;
- widget properties are read and written as fields (``items.Status.Text = "..."``), event
  handlers are Lua functions assigned to ``win.On.<ID>.<Event>``, and they receive the event
  as a table.

The standard ``io`` and ``os`` libraries are the runtime's own, so the script really writes
its job files and really starts ``realscale video`` through ``os.execute``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from fakes import resolve as fake

SCRIPT = Path(__file__).resolve().parents[3] / "plugins" / "resolve" / "realscale_resolve.lua"
RUNTIMES = {"luajit": "lupa.luajit21", "lua51": "lupa.lua51"}
"""Resolve embeds LuaJIT; plain Lua 5.1 checks that nothing LuaJIT-only slipped in."""


class Handle:
    """An API object as Lua sees it (``module``: a library whose functions take no self)."""

    __slots__ = ("module", "target")

    def __init__(self, target: object, module: bool = False) -> None:
        self.target = target
        self.module = module


class Method:
    """A method of an API object, fetched by Lua (``obj:Name`` or ``obj.Name``)."""

    def __init__(self, binding: Binding, handle: Handle, name: str, function: Any) -> None:
        self.binding = binding
        self.handle = handle
        self.name = name
        self.function = function

    def __call__(self, *args: Any) -> Any:
        if not self.handle.module:
            if not args or args[0] is not self.handle:
                kind = type(self.handle.target).__name__
                msg = f"{kind}.{self.name} called without its object: use obj:{self.name}(...)"
                raise TypeError(msg)
            args = args[1:]
        result = self.function(*[self.binding.to_python(a) for a in args])
        return self.binding.to_lua(result)


class LuaHandler:
    """A Lua function the script handed to the fake (an event handler)."""

    def __init__(self, binding: Binding, function: Any) -> None:
        self.binding = binding
        self.function = function

    def __call__(self, *args: Any) -> Any:
        return self.function(*[self.binding.to_lua(a) for a in args])


class Binding:
    """One Lua runtime with the fake's objects as Resolve's Lua binding presents them."""

    def __init__(self, runtime: str = "luajit") -> None:
        module = importlib.import_module(RUNTIMES[runtime])
        self.lua_type = module.lua_type
        self.lua = module.LuaRuntime(
            unpack_returned_tuples=True, register_eval=False, register_builtins=False,
            attribute_handlers=(self._get, self._set))
        self.handles: dict[int, Handle] = {}
        self.methods: dict[tuple[Handle, str], Method] = {}
        self._keep_what_lua_is_given()

    def _keep_what_lua_is_given(self) -> None:
        """Make every Python object that reaches Lua live as long as the runtime.

        lupa (2.0 to 2.8) remembers the userdata it made for each Python object in a weak
        table filled by ``luaL_ref``, keyed on the Python side by the object's address. When
        Lua drops such a userdata, one GC cycle clears its slot from the table and a later
        step runs its ``__gc``, which frees that slot number. An object first pushed in
        between takes the cleared slot (``luaL_ref`` reuses the table's border), so the
        ``__gc`` frees the slot of a live object; the next new object takes it, and pushing
        the live one again hands Lua the new one: the script's ``item.Text = ...`` then lands
        on a method. How often the script polls its worker, and so where the GC steps fall,
        varies with CPU load, so the failures came and went. With the table strong, no
        userdata of lupa's is ever collected, so no slot is ever freed.
        """
        keep = self.lua.eval(
            "function() local refs = debug.getregistry().LUPA_PYTHON_REFERENCES_TABLE "
            "if type(refs) ~= 'table' then return false end "
            "setmetatable(refs, nil) return true end")
        if not keep():
            msg = ("this lupa keeps its Python references elsewhere: update "
                   "Binding._keep_what_lua_is_given for it")
            raise RuntimeError(msg)

    # Lua reading and writing fields of Python objects

    def _get(self, obj: object, name: Any) -> Any:
        if not isinstance(obj, Handle):
            msg = f"Lua reached a Python object it should never see: {obj!r}"
            raise AttributeError(msg)
        if not isinstance(name, str) or name.startswith("_"):
            return None
        try:
            value = getattr(obj.target, name)
        except AttributeError:
            return None  # Resolve: nil for what an object does not have
        if isinstance(value, LuaHandler):
            return value.function
        if callable(value) and not isinstance(value, fake._Handlers):
            # one Method per object and name: what reaches Lua is kept (see above)
            method = self.methods.get((obj, name))
            if method is None or method.function != value:
                method = self.methods[obj, name] = Method(self, obj, name, value)
            return method
        return self.to_lua(value)

    def _set(self, obj: object, name: Any, value: Any) -> None:
        if not isinstance(obj, Handle) or not isinstance(name, str):
            msg = f"Lua cannot set {name!r} on {obj!r}"
            raise AttributeError(msg)
        setattr(obj.target, name, self.to_python(value))

    # Values crossing over

    def to_lua(self, value: Any) -> Any:
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, (list, tuple)):
            table = self.lua.table()
            for index, item in enumerate(value, start=1):
                table[index] = self.to_lua(item)
            return table
        if isinstance(value, dict):
            table = self.lua.table()
            for key, item in value.items():
                table[key] = self.to_lua(item)
            return table
        if isinstance(value, Handle | LuaHandler):
            return value.function if isinstance(value, LuaHandler) else value
        if self.lua_type(value) is not None:
            return value  # already a Lua value
        return self.wrap(value)

    def to_python(self, value: Any) -> Any:
        if isinstance(value, Handle):
            return value.target
        kind = self.lua_type(value)
        if kind == "function":
            return LuaHandler(self, value)
        if kind != "table":
            return value
        items = {key: self.to_python(item) for key, item in value.items()}
        if items and all(isinstance(k, int) for k in items) and \
                sorted(items) == list(range(1, len(items) + 1)):
            return [items[k] for k in range(1, len(items) + 1)]
        if not items:
            return []  # an empty table: the API's lists are the only empty ones it takes
        return items

    def wrap(self, target: object, module: bool = False) -> Handle:
        """The one handle of a fake object (the same object is the same value in Lua)."""
        handle = self.handles.get(id(target))
        if handle is None or handle.target is not target:
            handle = self.handles[id(target)] = Handle(target, module)
        return handle

    # Running the script

    def run(self, path: Path, **globals_: Any) -> Any:
        """Run a Lua file with these globals, as Resolve runs a menu script."""
        lua_globals = self.lua.globals()
        for name, value in globals_.items():
            lua_globals[name] = value
        load = self.lua.eval("function(text, name) local chunk, message = "
                             "(loadstring or load)(text, name); return {chunk, message} end")
        loaded = load(path.read_text(encoding="utf-8"), "@" + path.name)
        assert loaded[1] is not None, loaded[2]
        chunk = loaded[1]
        return chunk()


def run_lua_script(resolve: fake.FakeResolve, user: Any, runtime: str = "luajit",
                   timeout: float = 240, script: Path = SCRIPT) -> Any:
    """Run plugins/resolve/realscale_resolve.lua (or an installed copy, ``script``) with
    ``resolve``, ``fu`` and ``bmd`` given, as Resolve does for Workspace > Scripts; ``user``
    plays the person at the dialog."""
    binding = Binding(runtime)
    bmd = fake.FakeBmd(user, timeout=timeout)
    return binding.run(script, resolve=binding.wrap(resolve), fu=binding.wrap(resolve.Fusion()),
                       bmd=binding.wrap(bmd, module=True))
