# The two commands of the README; everything else is in scripts/.
.PHONY: demo test
demo:  ## install (inference only) and analyse the sample photos
	bash scripts/demo.sh
test:  ## install everything, lint, type-check and run all tests
	bash scripts/test.sh
