"""Applications built on keras_siglip: complete programs, not part of the library.

An app uses only the library's public API (`keras_siglip`, `keras_siglip.preprocessing`,
`keras_siglip.tasks`, ...) and may need packages the library does not (scikit-learn,
matplotlib). Nothing in the library imports an app; the command line runs one on demand.

- `keras_siglip.apps.digits`: `python -m keras_siglip demo`, a small SigLIP trained from
  scratch on handwritten digits and evaluated zero-shot.
- `keras_siglip.apps.commands`: `classify`, `embed` and `search`, a checkpoint and image
  files (or texts) to zero-shot labels, embeddings and nearest neighbours.
- `keras_siglip.apps.backends`: `python -m keras_siglip backends`, one model on JAX,
  TensorFlow and torch (each in a child process, `backends_worker`), compared with the oracle
  and timed.
"""
