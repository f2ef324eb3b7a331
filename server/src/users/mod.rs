//! Users: the people Countersign asks for a second factor. Apps provision them over REST.

pub mod http;
pub mod model;
pub mod service;
