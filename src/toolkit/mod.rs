//! The quantization toolkit around the layers: affine parameters ([`affine`]), fixed-point
//! requantization ([`fixed_point`]), calibration observers ([`calibration`]) and the
//! weight-only and reduced-float layers ([`weight_only`]), with [`modes`] to build any of the
//! five layer kinds behind the same [`Linear`](crate::Linear) API.

pub mod affine;
pub mod calibration;
pub mod fixed_point;
pub mod modes;
pub mod weight_only;
