import sys

from diffusionforge.cli import main

sys.exit(main())
