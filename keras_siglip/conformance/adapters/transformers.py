"""The Hugging Face transformers adapter: `SiglipModel` / `Siglip2Model` (eager attention, torch,
float32) holding a kit's parameters, its stages read by forward hooks.

torch and transformers are optional; they are imported only when a model is built or run.
"""

import math

import numpy as np

from keras_siglip.conformance.adapters import check_variant, image_size
from keras_siglip.conformance.verify import load_kit
from keras_siglip.convert import infer_architecture
from keras_siglip.convert.transformers import tree_to_state_dict


def _configs(vision, text, naflex, num_positions, variant):
    """transformers' vision and text config dicts (`variant` may change the GELU or the eps)."""
    act = "gelu" if variant == "gelu_erf" else "gelu_pytorch_tanh"
    eps = 1e-5 if variant == "ln_eps" else 1e-6
    vision_config = {
        "hidden_size": vision["width"],
        "intermediate_size": vision["mlp_dim"],
        "num_hidden_layers": vision["depth"],
        "num_attention_heads": vision["num_heads"],
        "num_channels": 3,
        "patch_size": vision["patch_size"],
        "hidden_act": act,
        "layer_norm_eps": eps,
        "attention_dropout": 0.0,
    }
    if naflex:
        vision_config["num_patches"] = vision["position_grid_size"] ** 2
    else:
        vision_config["image_size"] = vision["patch_size"] * math.isqrt(num_positions)
    text_config = {
        "vocab_size": text["vocabulary_size"],
        "hidden_size": text["width"],
        "intermediate_size": text["mlp_dim"],
        "num_hidden_layers": text["depth"],
        "num_attention_heads": text["num_heads"],
        "max_position_embeddings": text["sequence_length"],
        "projection_size": text["embed_dim"] or text["width"],
        "hidden_act": act,
        "layer_norm_eps": eps,
        "attention_dropout": 0.0,
        # Token ids are metadata that the model never reads; keep them inside the tiny vocabulary.
        "pad_token_id": 1,
        "bos_token_id": None,
        "eos_token_id": 1,
    }
    return vision_config, text_config


def transformers_model(kit, variant=None):
    """A transformers `SiglipModel` (or `Siglip2Model` for NaFlex kits) with the kit's params.

    Fixed-resolution kits may have non-square grids: transformers' Siglip adds its position
    table row by row to the flattened grid, so any grid works once the table has the grid's
    number of rows (we size it to the kit's table). `variant` applies one deliberate mistake
    (see `BROKEN_VARIANTS`) for exercising the locator.
    """
    import torch
    import transformers

    kit = load_kit(kit)
    if variant is not None:
        check_variant(variant)
    params = kit["params"]
    naflex, vision, text = infer_architecture(params, image_size(kit))
    num_positions = None if naflex else params["img/pos_embedding"].shape[1]
    vision_config, text_config = _configs(vision, text, naflex, num_positions, variant)
    cls = transformers.Siglip2Model if naflex else transformers.SiglipModel
    config_cls = transformers.Siglip2Config if naflex else transformers.SiglipConfig
    config = config_cls(text_config=text_config, vision_config=vision_config)
    model = cls._from_config(config, attn_implementation="eager", dtype=torch.float32)
    if num_positions is not None and num_positions != math.isqrt(num_positions) ** 2:
        embeddings = model.vision_model.embeddings
        embeddings.position_embedding = torch.nn.Embedding(num_positions, vision["width"])
        embeddings.num_patches = embeddings.num_positions = num_positions
        embeddings.register_buffer(
            "position_ids", torch.arange(num_positions).expand((1, -1)), persistent=False
        )

    state = tree_to_state_dict(params, text["width"])
    missing, unexpected = model.load_state_dict(
        {k: torch.from_numpy(v) for k, v in state.items()}, strict=False
    )
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise ValueError(f"state dict mismatch: missing {missing}, unexpected {unexpected}")
    if variant in ("map_residual", "map_unscaled"):
        _break_map_head(model.vision_model.head, variant)
    return model.eval()


def _break_map_head(head, variant):
    import torch

    attention = head.attention
    original = attention.forward

    def forward(query, key, value, *args, **kwargs):
        if variant == "map_residual":
            out, weights = original(query, key, value, *args, **kwargs)
            return out + query, weights
        # Attention written out without the 1/sqrt(head_dim) scale.
        mask = kwargs.get("key_padding_mask")
        width, heads = attention.embed_dim, attention.num_heads
        wq, wk, wv = attention.in_proj_weight.split(width)
        bq, bk, bv = attention.in_proj_bias.split(width)

        def split(x):
            return x.reshape(x.shape[0], x.shape[1], heads, width // heads).transpose(1, 2)

        q = split(query @ wq.T + bq)
        k, v = split(key @ wk.T + bk), split(value @ wv.T + bv)
        logits = q @ k.transpose(-1, -2)
        if mask is not None:
            logits = logits.masked_fill(mask[:, None, None, :].bool(), float("-inf"))
        out = (torch.softmax(logits, -1) @ v).transpose(1, 2).reshape(query.shape[0], -1, width)
        return attention.out_proj(out), None

    attention.forward = forward


def _add_hooks(model, naflex, store, handles):
    """Forward hooks that write every stage of both towers into `store`."""

    def hook(module, name, transform=lambda o: o, pre=False):
        def grab(mod, args, out=None):
            value = args[0] if pre else out
            if isinstance(value, tuple):
                value = value[0]
            store[name] = transform(value).detach().cpu().numpy().astype(np.float64)

        if pre:
            handles.append(module.register_forward_pre_hook(grab))
        else:
            handles.append(module.register_forward_hook(grab))

    for tower, prefix in ((model.vision_model, "img"), (model.text_model, "txt")):
        emb = tower.embeddings
        if tower is model.vision_model:
            if naflex:
                hook(emb.patch_embedding, "img/stem")
            else:
                hook(emb.patch_embedding, "img/stem", lambda o: o.permute(0, 2, 3, 1))
        else:
            hook(emb.token_embedding, "txt/embedded")
        hook(emb, f"{prefix}/with_posemb")
        for i, layer in enumerate(tower.encoder.layers):
            hook(layer.self_attn, f"{prefix}/block{i:02d}/sa")
            hook(layer.layer_norm2, f"{prefix}/block{i:02d}/+sa", pre=True)
            hook(layer.mlp, f"{prefix}/block{i:02d}/mlp")
            hook(layer, f"{prefix}/block{i:02d}/+mlp")
        norm = tower.post_layernorm if prefix == "img" else tower.final_layer_norm
        hook(norm, f"{prefix}/encoded")
        hook(tower.head, f"{prefix}/pooled")


def _model_inputs(inputs, naflex):
    import torch

    kwargs = {"input_ids": torch.from_numpy(np.asarray(inputs["token_ids"], np.int64))}
    if naflex:
        kwargs["pixel_values"] = torch.from_numpy(np.asarray(inputs["patches"], np.float32))
        kwargs["pixel_attention_mask"] = torch.from_numpy(
            np.asarray(inputs["patch_mask"], np.int64)
        )
        kwargs["spatial_shapes"] = torch.from_numpy(
            np.asarray(inputs["spatial_shapes"], np.int64)
        )
    else:
        images = np.asarray(inputs["images"], np.float32).transpose(0, 3, 1, 2)
        kwargs["pixel_values"] = torch.from_numpy(np.ascontiguousarray(images))
    return kwargs


def _np64(t):
    return t.detach().cpu().numpy().astype(np.float64)


def transformers_fn(kit, variant=None, model=None):
    """`fn(params, inputs)` running transformers with forward hooks on every stage."""

    def fn(params, inputs):
        nonlocal model
        if model is None:
            model = transformers_model(kit, variant)
        naflex = "patches" in inputs
        store, handles = {}, []
        _add_hooks(model, naflex, store, handles)
        try:
            kwargs = _model_inputs(inputs, naflex)
            model.zero_grad(set_to_none=True)
            out = model(**kwargs, return_loss=True)
            out.image_embeds.retain_grad()
            out.text_embeds.retain_grad()
            out.loss.backward()
        finally:
            for handle in handles:
                handle.remove()
        stages = dict(store)
        if naflex:
            stages["img/posemb"] = stages["img/with_posemb"] - stages["img/stem"]
        stages["txt/pre_logits"] = stages["txt/encoded"][:, -1]
        stages["zimg"], stages["ztxt"] = _np64(out.image_embeds), _np64(out.text_embeds)
        stages["logits"] = _np64(out.logits_per_image)
        stages["loss"] = _np64(out.loss).reshape(())
        stages["grad_zimg"] = _np64(out.image_embeds.grad)
        stages["grad_ztxt"] = _np64(out.text_embeds.grad)
        stages["grad_t_param"] = _np64(model.logit_scale.grad).reshape(())
        stages["grad_b"] = _np64(model.logit_bias.grad).reshape(())
        return stages

    return fn
