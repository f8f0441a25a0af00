"""How the lab is put together, checked on its source and its registry (docs/lab.md, "Design").

The lab stands beside the deployment: nothing under bench/ or loadtest/ imports native mode,
whose command line it uses instead. Experiments reach the lab through ``registry.Context``
only and are run in the registry's order; results.json has a schema generated from its models;
the report's HTML is a template, never strings in Python.
"""

from __future__ import annotations

import ast
import json
import re

import pytest

from bench import records, registry
from bench.lab import Lab
from bench.registry import Context, Experiment, Phase, Registry, RegistryError
from bench.verdicts import CLAIMS
from tests.support import ROOT, imported, imports_of, modules

BENCH = ROOT / "bench"


def test_the_import_check_sees_every_kind_of_import():
    text = "\n".join(
        ["import native", "import native.settings as s", "from native import cli", "from ..lab import Lab",
         "from . import io_bound"]
    )  # fmt: skip
    names = imported(text, ("bench", "claims"))
    assert {"native", "native.settings", "native.cli", "bench.lab", "bench.claims.io_bound"} <= names


@pytest.mark.parametrize("path", modules("bench", "loadtest"), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_lab_and_the_load_test_never_import_native_mode(path):
    """They drive the stack as a user does: HTTP, make, ``python -m native`` (bench/runner.py)."""
    native = sorted(name for name in imports_of(path) if name == "native" or name.startswith("native."))
    assert not native, f"{path.relative_to(ROOT)} imports {native}: ask `python -m native ...` instead"


@pytest.mark.parametrize("path", [p for p in modules("bench") if p.name not in ("lab.py", "__main__.py")],
                         ids=lambda p: str(p.relative_to(ROOT)))  # fmt: skip
def test_no_experiment_imports_the_lab_only_its_context(path):
    assert "bench.lab" not in imports_of(path), f"{path.relative_to(ROOT)}: take a registry.Context, not the Lab"


def test_every_attribute_of_the_lab_is_set_in_its_constructor():
    tree = ast.parse((BENCH / "lab.py").read_text())
    lab = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "Lab")
    for method in (node for node in lab.body if isinstance(node, ast.FunctionDef) and node.name != "__init__"):
        for node in ast.walk(method):
            targets = node.targets if isinstance(node, ast.Assign) else getattr(node, "target", None)
            for target in targets if isinstance(targets, list) else [targets]:
                assert not (isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name)
                            and target.value.id == "self"), f"Lab.{method.name} sets self.{target.attr}"  # fmt: skip
    for path in modules("bench"):
        assert "hasattr(" not in path.read_text(), f"{path.relative_to(ROOT)}: attributes are set up front"


def test_the_lab_is_a_context():
    """Every member of the Protocol is a method of Lab or an attribute its constructor sets."""
    tree = ast.parse((BENCH / "lab.py").read_text())
    lab = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "Lab")
    init = next(node for node in lab.body if isinstance(node, ast.FunctionDef) and node.name == "__init__")
    attributes = {
        target.attr
        for node in ast.walk(init)
        if isinstance(node, ast.Assign | ast.AnnAssign)
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Attribute)
    }
    members = {name for name in vars(Context) if not name.startswith("_")} | set(Context.__annotations__)
    assert members - attributes - set(vars(Lab)) == set()


def test_every_claim_is_decided_by_exactly_one_registered_experiment():
    registry.load()
    assert registry.REGISTRY.claims() == sorted(CLAIMS)


def test_run_order_comes_from_the_registry_and_honours_every_dependency():
    order = registry.load()
    position = {exp.id: i for i, exp in enumerate(order)}
    for exp in order:
        for dependency in (*exp.needs, *exp.after):
            assert position[dependency] < position[exp.id], (dependency, exp.id)
    assert [exp.phase for exp in order] == sorted(exp.phase for exp in order)
    # Claim 6 measures the one-worker async server fresh, before claims 1, 3 and 9 load it.
    assert position["claims-5-6"] < min(position["claim-1"], position["claims-3-9"])
    # Each section an experiment fills is a field of results.json, filled once.
    sections = [exp.id for exp in order if not exp.claims]
    assert len(sections) == len(set(sections)) and set(sections) <= set(records.Results.model_fields)


def noop(lab):
    return None


def test_the_registry_refuses_what_it_could_not_run():
    reg = Registry()
    reg.add(Experiment("ceiling", "c", noop, phase=Phase.BASELINE))
    with pytest.raises(RegistryError, match="registered twice"):
        reg.add(Experiment("ceiling", "again", noop))
    with pytest.raises(RegistryError, match="names no section"):
        reg.add(Experiment("nonesuch", "a section results.json does not have", noop))
    reg.add(Experiment("claim-8", "8", noop, claims=(8,), needs=("missing",)))
    with pytest.raises(RegistryError, match="'missing', which is not registered"):
        reg.ordered()

    loop = Registry()
    loop.add(Experiment("proxy", "p", noop, after=("static",)))
    loop.add(Experiment("static", "s", noop, after=("proxy",)))
    with pytest.raises(RegistryError, match="depend on each other: proxy, static"):
        loop.ordered()

    claims = Registry()
    claims.add(Experiment("claim-8", "8", noop, claims=(8,)))
    claims.add(Experiment("claim-10", "10", noop, claims=(10,), needs=("claim-8",)))
    with pytest.raises(RegistryError, match="fills no section"):
        claims.ordered()


def test_the_registry_orders_by_phase_then_claim_then_dependency():
    reg = Registry()
    reg.add(Experiment("peers", "p", noop, phase=Phase.EDGE))
    reg.add(Experiment("claim-11", "11", noop, claims=(11,)))
    reg.add(Experiment("claim-2", "2", noop, claims=(2,), needs=("curves",)))
    reg.add(Experiment("claim-1", "1", noop, claims=(1,), after=("claim-11",)))
    reg.add(Experiment("curves", "c", noop, phase=Phase.BASELINE))
    assert [exp.id for exp in reg.ordered()] == ["curves", "claim-2", "claim-11", "claim-1", "peers"]


def test_the_checked_in_schema_is_the_one_the_models_generate():
    checked_in = json.loads((BENCH / records.SCHEMA_FILE).read_text())
    assert checked_in == records.schema(), "regenerate it: .venv/bin/python -m bench schema > bench/results.schema.json"


def test_the_schema_describes_every_section_an_experiment_fills():
    schema = records.schema()
    registry.load()
    for exp in registry.REGISTRY.ordered():
        if not exp.claims:
            assert exp.id in schema["properties"], exp.id
    assert schema["additionalProperties"] is False  # a misspelt figure is an error, not ignored


HTML_IN_PYTHON = re.compile(r"<\s*/?\s*(html|head|body|p|div|span|table|tr|td|th|h[1-6]|ul|li|figure|a|b|code)\b")


@pytest.mark.parametrize("path", modules("bench"), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_html_is_written_in_python(path):
    """The report's page is bench/templates/report.html.j2; Python hands it words and numbers."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            assert not HTML_IN_PYTHON.search(node.value), f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}"


def test_the_report_template_escapes_what_it_is_given():
    from bench.report import environment

    assert environment().autoescape is True
    page = environment().from_string("{{ x }}").render(x="<b>&")
    assert page == "&lt;b&gt;&amp;"


# What a deployment is made of: the product's settings, Compose files, manifests, nginx
# configuration and .env.example.
PRODUCT = (
    "*/settings.py", "docker-compose*.yml", "*/compose.yaml", "deploy/kubernetes/**/*.yaml", "nginx/**/*.template",
    "nginx/**/*.conf", ".env.example",
)  # fmt: skip
LAB_WORDS = re.compile(r"/lab/|TWINSTACK_LAB|lab_routes|PROCESS_POOL|process_pool|bench\.lab_app")


def test_the_product_has_no_lab_variable_route_or_location():
    """The lab's app wraps the product's (bench/lab_app.py); nothing a deployment runs names it."""
    files = sorted({path for pattern in PRODUCT for path in ROOT.glob(pattern)})
    assert len(files) > 15, files  # not vacuous: the globs find the product
    found = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}" for path in files
             for n, line in enumerate(path.read_text().splitlines(), 1) if LAB_WORDS.search(line)]  # fmt: skip
    assert not found, "\n".join(found)
