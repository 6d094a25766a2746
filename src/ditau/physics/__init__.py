"""Physics shared by every stage: constants (:mod:`.constants`), the one channel registry
(:mod:`.channels`) and the one four-vector layer (:mod:`.fourvec`).

Units: GeV for energies, momenta and masses; radians for angles; lab frame unless a function
says otherwise.
"""

from ditau.physics.channels import (
    ANALYSIS_CHANNELS,
    CHANNEL_LABELS,
    CHANNELS,
    DECAY_MODES,
    REFERENCE_ORDER,
    channel_of,
    check_channels,
    expected_channel_fractions,
)
from ditau.physics.constants import (
    BR_PDG,
    BR_PDG_ERR,
    GAMMA_Z,
    KAPPA,
    M_PI,
    M_PI0,
    M_RHO,
    M_TAU,
    M_Z,
    MB_TO_FB,
    SIN2_THETA_EFF,
    charges,
)
from ditau.physics.fourvec import (
    as_p4_array,
    boost_to_rest,
    delta_phi,
    delta_r,
    eta,
    from_pt_eta_phi_m,
    mass,
    mass2,
    momentum3,
    momentum4,
    p4_from_columns,
    phi,
    pt,
    pt_eta,
    tau_four_momenta,
    to_array,
    unit,
    wrap_phi,
)

__all__ = [
    "ANALYSIS_CHANNELS", "BR_PDG", "BR_PDG_ERR", "CHANNELS", "CHANNEL_LABELS", "DECAY_MODES",
    "GAMMA_Z", "KAPPA", "MB_TO_FB", "M_PI", "M_PI0", "M_RHO", "M_TAU", "M_Z", "REFERENCE_ORDER",
    "SIN2_THETA_EFF", "as_p4_array",
    "boost_to_rest", "channel_of", "charges", "check_channels", "delta_phi",
    "delta_r", "eta", "expected_channel_fractions", "from_pt_eta_phi_m", "mass", "mass2",
    "momentum3", "momentum4", "p4_from_columns", "phi", "pt", "pt_eta", "tau_four_momenta",
    "to_array", "unit", "wrap_phi",
]
