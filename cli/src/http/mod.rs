//! The HTTP/1.1 static file server behind `proactor http`: request parsing, path safety, response
//! building and the per-connection loop on the proactor, one concern per file.
