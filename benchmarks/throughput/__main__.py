"""python -m benchmarks.throughput --mode cpu|gpu|smoke (see the package docstring)."""

from benchmarks.throughput.driver import main

if __name__ == "__main__":
    # Library warnings would push the progress lines and the table out of a short log tail.
    import warnings

    from transformers.utils import logging as hf_logging

    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    main()
