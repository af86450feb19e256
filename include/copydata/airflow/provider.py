"""Provider metadata: the `flasharray` connection type and its form fields."""

from __future__ import annotations

from copydata import __version__


def get_provider_info() -> dict:
    return {
        "package-name": "copydata",
        "name": "copydata",
        "description": "Copy data management for databases on Pure Storage FlashArray.",
        "versions": [__version__],
        "connection-types": [
            {
                "connection-type": "flasharray",
                "hook-class-name": "copydata.airflow.hooks.flasharray.FlashArrayHook",
                "hook-name": "Pure Storage FlashArray",
                "conn-fields": {
                    "verify_tls": {
                        "label": "Verify TLS certificate",
                        "schema": {"type": ["boolean", "null"], "default": True},
                        "description": "Check the array's certificate (against the CA file when one is given).",
                    },
                    "ca_file": {
                        "label": "CA file",
                        "schema": {"type": ["string", "null"]},
                        "description": "PEM file of the CA that signed the array's certificate.",
                    },
                    "api": {
                        "label": "REST API",
                        "schema": {"type": ["string", "null"], "default": "auto",
                                   "enum": ["auto", "rest2", "rest1"]},
                        "description": "auto: REST 2 when the array offers 2.9 or newer, else REST 1.",
                    },
                    "host_name": {
                        "label": "This host's name on the array",
                        "schema": {"type": ["string", "null"]},
                        "description": "Host object that local connections use (default: this machine's hostname).",
                    },
                    "devices_dir": {
                        "label": "Device folder",
                        "schema": {"type": ["string", "null"], "default": "/dev/disk/by-id"},
                        "description": "Where connected volumes appear as wwn-0x624a9370<serial>. "
                                       "The emulator publishes them under <state>/dev/disk/by-id.",
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "login", "extra"],
                    "relabeling": {"host": "Array address", "password": "API token"},
                    "placeholders": {"host": "flasharray.example.com", "port": "443"},
                },
            }
        ],
    }
