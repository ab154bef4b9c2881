"""The code a logged adapter is loaded from (MLflow's models-from-code).

``log_model`` copies this file into the model; loading runs it, so an :class:`AdapterPyfunc` is
built from code and no object of ours is ever unpickled.
"""

from mlflow.models import set_model

from retrain.adapters.pyfunc import AdapterPyfunc

set_model(AdapterPyfunc())
