//! What every client mapping produces, and the one way a mapping can fail. Pure.

use postwarden_engine::{Desired, NotApplicable};
use postwarden_profiles::{Control, ControlId, Template, Vars};

/// One client's desired settings for a profile, and the controls it cannot carry with the
/// reason. `L` is the client's location type.
#[derive(Debug)]
pub struct Mapped<L> {
    pub desired: Vec<Desired<L>>,
    pub not_applicable: Vec<NotApplicable>,
}

impl<L> Default for Mapped<L> {
    fn default() -> Self {
        Mapped {
            desired: Vec::new(),
            not_applicable: Vec::new(),
        }
    }
}

/// A control whose template could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: field `controls.{control}.value`: {message}")]
pub struct MappingError {
    pub origin: String,
    pub control: ControlId,
    pub message: String,
}

/// Renders a control's template, naming the control's value in the profile on failure.
pub fn render(control: &Control, template: &Template, vars: &Vars) -> Result<String, MappingError> {
    template.render(vars).map_err(|e| MappingError {
        origin: control.origin.clone(),
        control: control.id,
        message: e.to_string(),
    })
}
