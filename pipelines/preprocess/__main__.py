import sys

from pipelines.preprocess.run import main

sys.exit(main())
