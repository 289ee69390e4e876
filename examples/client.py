"""Call a running `facial-emotion serve` from another program.

facial-emotion serve &            # http://127.0.0.1:8000
python examples/client.py ../shared/media/two_people.jpg
"""

import json
import sys
import urllib.request

with open(sys.argv[1], "rb") as f:
    request = urllib.request.Request(
        "http://127.0.0.1:8000/v1/analyze",
        data=f.read(),
        headers={"Content-Type": "application/octet-stream"},
    )
with urllib.request.urlopen(request) as response:
    result = json.load(response)
for face in result["faces"]:
    print(face["box"], face["emotion"], face["confidence"])
