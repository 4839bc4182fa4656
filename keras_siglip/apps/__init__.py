"""Applications built on keras_siglip: complete programs, not part of the library.

An app uses only the library's public API (`keras_siglip`, `keras_siglip.preprocessing`,
`keras_siglip.tasks`, ...) and may need packages the library does not (scikit-learn,
matplotlib). Nothing in the library imports an app; the command line runs one on demand.

- `keras_siglip.apps.digits`: `python -m keras_siglip demo`, a small SigLIP trained from
  scratch on handwritten digits and evaluated zero-shot.
"""
