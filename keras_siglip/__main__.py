import sys

from keras_siglip.cli import main

sys.exit(main())
