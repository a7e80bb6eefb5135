# the environment of every device call; .carry/mirror may be absent (stop 32 left it out to make room for E3's fits):
export SIDBENCH_CACHE=/tmp/cache SIDBENCH_GIT_COMMIT=$(cat .carry/commit) PYTHONPATH=$PWD PYTHONUNBUFFERED=1 SIDBENCH_MIRROR=$PWD/.carry/mirror
mkdir -p /tmp/cache; cp -rn .carry/cache/. /tmp/cache/
