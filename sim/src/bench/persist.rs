//! The store's cost per transition (placeholder until group commit lands).

use super::{BenchError, Figures};

pub(crate) fn run(_figures: &mut Figures, _quick: bool) -> Result<(), BenchError> {
    Ok(())
}
