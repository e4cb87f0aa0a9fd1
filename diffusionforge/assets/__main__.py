import sys

from diffusionforge.assets import main

sys.exit(main())
