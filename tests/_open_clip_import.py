"""Import open_clip and timm beside the pinned CPU torch, which has no working torchvision.

open_clip and timm import torchvision at module level, for image transforms, datasets and
`FrozenBatchNorm2d`; their SigLIP models (timm's `VisionTransformer` with `AttentionPoolLatent`,
open_clip's `TextTransformer`, `CustomTextCLIP`) never call it. PyPI's torchvision cannot load
beside the CPU torch ("operator torchvision::nms does not exist"). So, when a plain import fails
for want of torchvision, the two packages are imported with a placeholder `torchvision` whose
every name is a class that raises if anything instantiates it: the models under test are
open_clip's and timm's own code, and using any torchvision object would fail loudly, not
silently. The placeholder is removed from `sys.modules` and the import path right after, so
nothing else in the test process sees a torchvision.
"""

import importlib
import importlib.abc
import importlib.machinery
import sys
import types


class _PlaceholderType(type):
    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        attribute = _PlaceholderType(f"{cls.__name__}.{name}", (cls,), {})
        setattr(cls, name, attribute)  # one distinct object per name (enums used as dict keys)
        return attribute


class _Placeholder(metaclass=_PlaceholderType):
    def __init__(self, *args, **kwargs):
        raise RuntimeError(f"{type(self).__name__} is a torchvision placeholder: the test used "
                           "torchvision, which is not installed.")


class _PlaceholderModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        attribute = _PlaceholderType(f"{self.__name__}.{name}", (_Placeholder,), {})
        setattr(self, name, attribute)
        return attribute


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):
        if name == "torchvision" or name.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _PlaceholderModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        pass


def import_open_clip():
    """`(open_clip, timm, how)`, or `(None, None, why not)` when they are not installed."""
    try:
        import open_clip
        import timm

        return open_clip, timm, "imported as installed"
    except ImportError as error:
        if "torchvision" not in str(error):
            return None, None, f"open_clip / timm not importable: {error}"
    except RuntimeError as error:  # a torchvision that does not match torch
        if "torchvision" not in str(error):
            raise
    for name in [m for m in sys.modules if m.split(".")[0] in ("open_clip", "timm",
                                                                "torchvision")]:
        del sys.modules[name]  # half-imported by the attempt above
    import transformers  # noqa: F401  (before the placeholder: its torchvision probe sees none)

    finder = _Finder()
    sys.meta_path.insert(0, finder)
    try:
        open_clip = importlib.import_module("open_clip")
        timm = importlib.import_module("timm")
    except ImportError as error:
        return None, None, f"open_clip / timm not importable: {error}"
    finally:
        sys.meta_path.remove(finder)
        for name in [m for m in sys.modules if m.split(".")[0] == "torchvision"]:
            del sys.modules[name]
    return open_clip, timm, "imported with a placeholder torchvision"
