//! Analyses over datasets and feature tables: the CKS (2014) OFI price-impact regression, feature
//! summaries and information coefficients, and the small statistics they share.

pub mod ic;
pub mod ofi_impact;
pub mod stats;
pub mod summary;
