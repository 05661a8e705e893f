//! (in progress) The Service Authorization Reference for the actions the
//! template grants: resource types, ARN formats, condition keys.
