"""Port a SigLIP checkpoint: transformers -> Keras -> big_vision -> Keras.

A tiny random transformers `SiglipModel` stands in for a hub checkpoint (no
download needed). At each hop the script prints the largest difference of the
image embeddings, text embeddings and logits from the transformers model's.

    KERAS_BACKEND=jax python examples/port_checkpoint.py

With a real checkpoint, the same steps are one call each:

    model = keras_siglip.convert.load_transformers("siglip-base-patch16-224/")
    keras_siglip.convert.save_big_vision(model, "siglip_b16_224.npz")

or, from the command line, `python -m keras_siglip convert SRC DST`.
"""

import math
import tempfile
from pathlib import Path

import numpy as np
import torch
import transformers

import keras
from keras_siglip.convert import load_big_vision, load_transformers, save_big_vision


def tiny_transformers_model(seed=0):
    """A SigLIP 1 model of transformers' test sizes, with every weight re-drawn."""
    text = dict(vocab_size=99, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                num_attention_heads=4, max_position_embeddings=16, pad_token_id=1,
                bos_token_id=2, eos_token_id=3)
    vision = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                  num_attention_heads=4, image_size=30, patch_size=2)
    config = transformers.SiglipConfig(text_config=text, vision_config=vision)
    model = transformers.SiglipModel(config).eval()
    model.set_attn_implementation("eager")
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                param.copy_(1.0 + 0.1 * torch.randn_like(param))
            elif name.endswith("bias") and "logit" not in name:
                param.normal_(0.0, 0.1)
            else:
                param.normal_(0.0, 0.02)
        model.logit_scale.fill_(math.log(10.0))
        model.logit_bias.fill_(-2.0)
    return model


def keras_outputs(model, images, ids):
    out = model({"images": images, "token_ids": ids.astype(np.int32)})
    return {
        "image embeddings": keras.ops.convert_to_numpy(model.vision_encoder(images)),
        "text embeddings": keras.ops.convert_to_numpy(model.text_encoder(ids.astype(np.int32))),
        "logits": keras.ops.convert_to_numpy(out["logits"]),
    }


def report(hop, outputs, reference):
    errors = ", ".join(
        f"{key} {np.max(np.abs(outputs[key] - reference[key])):.2e}" for key in reference
    )
    print(f"{hop:<34} max |diff| from transformers: {errors}")


def main():
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (3, 30, 30, 3)).astype(np.float32)  # NHWC in [-1, 1]
    ids = rng.integers(4, 99, (4, 16))
    ids[:, 10:] = 1  # SigLIP 1 pads with EOS = 1

    hf = tiny_transformers_model()
    with torch.no_grad():
        pixels = torch.tensor(images.transpose(0, 3, 1, 2))  # transformers is NCHW
        reference = {
            "image embeddings": hf.get_image_features(pixel_values=pixels).pooler_output.numpy(),
            "text embeddings": hf.get_text_features(
                input_ids=torch.tensor(ids)).pooler_output.numpy(),
            "logits": hf(pixel_values=pixels, input_ids=torch.tensor(ids)).logits_per_image.numpy(),
        }

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        hf.save_pretrained(tmp / "transformers")

        model = load_transformers(tmp / "transformers")
        report("transformers -> Keras", keras_outputs(model, images, ids), reference)

        save_big_vision(model, tmp / "siglip.npz")
        again = load_big_vision(tmp / "siglip.npz")
        outputs = keras_outputs(again, images, ids)
        report("Keras -> big_vision -> Keras", outputs, reference)
        previous = keras_outputs(model, images, ids)
        exact = all(np.array_equal(outputs[key], previous[key]) for key in outputs)
        print(f"{'':<34} identical to the first Keras model: {exact}")

    print(f"backend: {keras.backend.backend()}")


if __name__ == "__main__":
    main()
