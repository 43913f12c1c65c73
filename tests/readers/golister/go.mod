module signery.test/golister

go 1.19
