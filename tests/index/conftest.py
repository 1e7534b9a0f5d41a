from tests.support.index_data import fresh_out, index_source  # noqa: F401  (the shared indexed-output fixtures)
