//! (in progress) One access key per function: the SigV4 access key id says
//! which function is calling.
