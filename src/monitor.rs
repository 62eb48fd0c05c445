//! The leak detector for running services (issue 6: being written).
