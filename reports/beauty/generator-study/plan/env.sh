export SIDBENCH_CACHE=/tmp/cache SIDBENCH_GIT_COMMIT=$(cat .carry/commit) PYTHONPATH=$PWD PYTHONUNBUFFERED=1 SIDBENCH_MIRROR=$PWD/.carry/mirror
mkdir -p /tmp/cache; cp -rn .carry/cache/. /tmp/cache/
