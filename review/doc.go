// Package review renders an update or a dry-run deployment as one self-contained HTML page for the people who approve it: no scripts, no requests, everything escaped.
package review
