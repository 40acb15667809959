"""Tumour growth models, fitting, calibrated forecasts and what-if scenarios (numpy/scipy only).

Import what you need from the sub-modules: ``models`` (the model library), ``series``
(cleaning and status), ``fit`` (multi-start fits, AIC/BIC, Akaike ensemble), ``uncertainty``
(prediction intervals and calibration), ``priors`` (k-NN population priors), ``whatif``
(scenarios) and ``cli`` (``dtt fit``).
"""

from DTTLib.growth.fit import FitOptions, ModelFit, SeriesFit, fit_series, fit_values
from DTTLib.growth.models import MODELS, Exposure, GrowthModel, get_model, model_names
from DTTLib.growth.series import Series, clean_series

__all__ = ["MODELS", "Exposure", "FitOptions", "GrowthModel", "ModelFit", "Series", "SeriesFit",
           "clean_series", "fit_series", "fit_values", "get_model", "model_names"]
