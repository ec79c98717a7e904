"""The one client stack to upstreams: the pooled HTTP/1.1 connections, the transport that sends one
attempt and maps every client failure into the error tree, and the built-in mock upstream."""
