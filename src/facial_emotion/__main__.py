import sys

from facial_emotion.cli import main

sys.exit(main())
