"""The code a logged adapter is loaded from (MLflow's models-from-code).

``log_model`` copies this file into the model; loading runs it, so an :class:`AdapterPyfunc` is
built from code and no object of ours is ever unpickled. Its import finds the suite's modules the
model carries in ``code/`` (:data:`~retrain.adapters.pyfunc.LOADER_MODULES`), or, in a process that
imported the suite before, the installed ones: so models logged before they were carried load too.
"""

from mlflow.models import set_model

from retrain.adapters.pyfunc import AdapterPyfunc

set_model(AdapterPyfunc())
